// Preload (node --import) for a stdio MCP server: appends, as JSON lines to
// the file named by $RECORD_STDIN, the process's environment once and then
// every chunk it reads on stdin — exactly what the gateway sent it. The
// stream is not read here (no listener is added, so nothing is lost before
// the server's own transport attaches): only its 'data' events are observed.
import { appendFileSync } from 'node:fs';

const file = process.env.RECORD_STDIN;
if (file) {
    const rec = fields => appendFileSync(file, JSON.stringify({ pid: process.pid, ...fields }) + '\n');
    rec({ env: { ...process.env } });
    const stdin = process.stdin;
    const emit = stdin.emit;
    stdin.emit = function (event, ...args) {
        if (event === 'data') rec({ data: String(args[0]) });
        return emit.call(this, event, ...args);
    };
}
