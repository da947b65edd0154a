// Starts one test server as its own process, for run.sh:
//
//   node lib/serve.mjs as  --port N
//   node lib/serve.mjs pep --port N --pdp http://127.0.0.1:P --paths /mcp,/mcp-accumulate
//
// Prints one line "ready <url>" once listening; stops on SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { startAS } from './as.mjs';
import { startPEP } from './pep.mjs';

const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
        port: { type: 'string', default: '0' },
        pdp: { type: 'string' },
        paths: { type: 'string', default: '/mcp' }
    }
});
const port = Number(values.port);
let srv;
switch (positionals[0]) {
    case 'as':
        srv = await startAS({ port });
        break;
    case 'pep':
        if (!values.pdp) throw new Error('pep needs --pdp URL');
        srv = await startPEP({ port, pdpURL: values.pdp, paths: values.paths.split(',') });
        break;
    default:
        console.error('usage: serve.mjs as|pep --port N [--pdp URL --paths /a,/b]');
        process.exit(2);
}
console.log(`ready ${srv.url}`);
const stop = async () => {
    await Promise.race([srv.close(), new Promise(r => setTimeout(r, 1000))]);
    process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
