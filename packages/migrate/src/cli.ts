import { runCliProcess } from './cli-process';

// The plain golang-migrate compatible CLI (one folder, one tracking table). `npm run migrate` runs
// services/all/src/migrate.ts instead, which applies Sluice's core schema before the folder on `up`.
await runCliProcess();
