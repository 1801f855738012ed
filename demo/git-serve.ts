// The demo's Git server, as its own process so that it outlives `npm start`: serves the bare repositories in
// ROOT over smart HTTP on HOST:PORT (the cluster's bridge address, where pods reach the host) until killed
// (`npm start -- --down` does). Prints one line, "listening on http://HOST:PORT", once it serves.
import { startGitServer } from '../test/support/git-server.ts';

const [root, host, port] = process.argv.slice(2);
if (root === undefined || host === undefined) {
  console.error('usage: node demo/git-serve.ts ROOT HOST [PORT]');
  process.exit(2);
}
const server = await startGitServer({ root, host, port: Number(port ?? 0) });
console.log(`listening on ${server.baseUrl}`);
const stop = (): void => void server.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
