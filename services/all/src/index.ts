export { type LauncherConfig, loadLauncherConfig } from './config';
