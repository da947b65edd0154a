// The environment of devmode.test.mjs: `pdp serve --dev --resource <PEP>/mcp`
// as `make run` starts it (dev authorization server, demo policy, embedded
// NATS with the audit on), in a temporary directory, protecting an MCP server
// of ours (lib/pep.mjs: an SDK McpServer whose PEP asks the PDP). There is no
// other authorization server: clients sign in at the PDP's /dev issuer.
//
//   SDK client / inspector-cli ──► PEP (lib/pep.mjs) ──/v1/decide──► pdp serve --dev
//        │                                                            issuer <PDP>/dev
//        └──────────── registration or CIMD, /authorize, /token ─────────┘
//   client metadata document: https://127.0.0.1:<port>/client.json (self-signed,
//   served here; the dev authorization server fetches loopback documents
//   without verifying the certificate)
//
// pdp is a child process (stopped by close(): SIGTERM, then SIGKILL after 5 s;
// killed on exit should the test process die first); the PEP and the document
// server run in the test process.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPEP } from './pep.mjs';

/** The redirect URI of the test clients: never contacted, the code is read from the Location. */
export const REDIRECT_URI = 'http://127.0.0.1:9/callback';

const freePort = () =>
    new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });

async function waitFor(what, proc, ok) {
    for (let i = 0; i < 200; i++) {
        if (proc.exited()) throw new Error(`${proc.name} exited while waiting for ${what}:\n${proc.output()}`);
        if (await ok().catch(() => false)) return;
        await new Promise(r => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}:\n${proc.output()}`);
}

function startProcess(name, argv, { cwd, logFile }) {
    const child = spawn(argv[0], argv.slice(1), { cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const file = createWriteStream(logFile);
    const onData = c => {
        out.push(c);
        file.write(c);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const exited = once(child, 'exit');
    const kill = () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    process.on('exit', kill);
    return {
        name,
        output: () => Buffer.concat(out).toString('utf8'),
        exited: () => child.exitCode !== null || child.signalCode !== null,
        async stop() {
            if (child.exitCode === null && child.signalCode === null) {
                child.kill('SIGTERM');
                const t = setTimeout(() => child.kill('SIGKILL'), 5000);
                await exited;
                clearTimeout(t);
            }
            process.off('exit', kill);
            await new Promise(r => file.end(r));
        }
    };
}

/**
 * A client metadata document server on https://127.0.0.1 with a self-signed
 * certificate made by openssl; null when openssl is not installed.
 */
async function startDocServer(tmp, port) {
    const key = join(tmp, 'cimd-key.pem');
    const cert = join(tmp, 'cimd-cert.pem');
    try {
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
            '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    } catch {
        return null;
    }
    const url = `https://127.0.0.1:${port}/client.json`;
    let fetches = 0;
    const server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
        if (req.url !== '/client.json') {
            res.writeHead(404).end();
            return;
        }
        fetches++;
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({
            client_id: url,
            client_name: 'TypeScript SDK (metadata document)',
            redirect_uris: [REDIRECT_URI],
            grant_types: ['authorization_code'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none'
        }));
    });
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
    });
    return { url, fetches: () => fetches, close: () => new Promise(r => server.close(r)) };
}

/**
 * Starts the environment.
 * @param {object} o
 * @param {string} o.pdpBin  the pdp binary
 * @returns {Promise<{tmp: string, pdp: string, resource: string, cimd: object|null, pdpLog: () => string, close: () => Promise<void>}>}
 */
export async function startDevModeEnv({ pdpBin }) {
    const tmp = mkdtempSync(join(tmpdir(), 'pdp-devmode-test.'));
    const closers = [];
    let closing;
    const close = () =>
        (closing ??= (async () => {
            process.off('SIGTERM', onSignal);
            process.off('SIGINT', onSignal);
            for (const c of closers.reverse()) await c();
            if (process.env.KEEP_TMP === '1') console.error(`kept ${tmp}`);
            else rmSync(tmp, { recursive: true, force: true });
        })());
    const onSignal = signal => {
        close().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    try {
        const [pdpPort, pepPort, docPort] = [await freePort(), await freePort(), await freePort()];
        const pdp = `http://127.0.0.1:${pdpPort}`;
        const resource = `http://127.0.0.1:${pepPort}/mcp`;
        // As `make run` (go run ./cmd/pdp serve --dev), from a directory of its own.
        const proc = startProcess('pdp serve --dev', [pdpBin, 'serve', '--dev', '--listen', `127.0.0.1:${pdpPort}`, '--resource', resource], {
            cwd: tmp,
            logFile: join(tmp, 'pdp.log')
        });
        closers.push(() => proc.stop());
        await waitFor('pdp serve --dev to be ready', proc, async () => (await fetch(`${pdp}/readyz`, { signal: AbortSignal.timeout(1000) })).ok);
        const pep = await startPEP({ port: pepPort, pdpURL: pdp, paths: ['/mcp'] });
        closers.push(() => Promise.race([pep.close(), new Promise(r => setTimeout(r, 1000))]));
        const cimd = await startDocServer(tmp, docPort);
        if (cimd) closers.push(() => cimd.close());
        return { tmp, pdp, resource, pep: pep.url, cimd, pdpLog: proc.output, close };
    } catch (err) {
        await close();
        throw err;
    }
}
