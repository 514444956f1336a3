// A webhooks service in a process of its own, configured by its environment, for the SIGKILL
// test: it reports its ingress port to the parent over IPC and runs until killed.
import { loadWebhooksConfig } from '../../src/config';
import { startWebhooksServer } from '../../src/server';

const server = await startWebhooksServer(loadWebhooksConfig(process.env));
process.send?.({ type: 'ready', httpPort: server.httpPort });
