// The test environment: a test authorization server, a real mcp-pdp
// (`pdp serve`, the binary from PDP_BIN or built from the repository) whose
// resources are the test servers' URLs, and free loopback ports for them.
// The policy is the repository's default policy (its *.rego, read-only) with
// this file's catalog.
// startDevEnv: a dev PDP (`pdp serve --dev`, the demo catalog) whose
// `pdp token` mints tokens, also bound to DPoP keys.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAS } from '../../../../test/clients/lib/as.mjs'; // shared with the repository's client tests

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..', '..');

export const SCOPE_A = 'math:sum';
export const SCOPE_B = 'weather:read';

/** The catalog the PDP enforces for every test resource. */
export const CATALOG = `      unknown: {access: deny}
      tools:
        echo: {access: public}
        whoami: {access: public}
        get-sum: {access: step_up, scopes: ["${SCOPE_A}"]}
        get-weather: {access: step_up, scopes: ["${SCOPE_B}"]}
        secret: {access: deny}
        limited: {access: public, rate: {limit: 1, per: 1h, by: sub}}
      prompts: {}
      resources: {}
      resource_templates: {}
      methods:
        completion/complete: {access: public}
        logging/setLevel: {access: public}`;

/** The ports handed out in this process: a port picked and not bound yet is not handed out twice. */
const handedOut = new Set();

const anyFreePort = () =>
    new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });

export async function freePort() {
    for (;;) {
        const p = await anyFreePort();
        if (!handedOut.has(p)) {
            handedOut.add(p);
            return p;
        }
    }
}

export async function freePorts(n) {
    const ps = [];
    while (ps.length < n) ps.push(await freePort());
    return ps;
}

/**
 * Starts `pdp` with args and waits until it is ready at pdpUrl.
 * @returns {Promise<{output: () => string, stop: () => Promise<void>}>}
 */
async function spawnPdp(bin, args, pdpUrl) {
    const out = [];
    const pdp = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    pdp.stdout.on('data', c => out.push(c));
    pdp.stderr.on('data', c => out.push(c));
    const exited = once(pdp, 'exit');
    const kill = () => pdp.exitCode === null && pdp.signalCode === null && pdp.kill('SIGKILL');
    process.on('exit', kill);
    const output = () => Buffer.concat(out).toString('utf8');
    const stop = async () => {
        if (pdp.exitCode === null && pdp.signalCode === null) {
            pdp.kill('SIGTERM');
            const t = setTimeout(() => pdp.kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(t);
        }
        process.off('exit', kill);
    };
    try {
        for (let i = 0; ; i++) {
            if (pdp.exitCode !== null) throw new Error(`pdp exited during start-up:\n${output()}`);
            const ok = await fetch(`${pdpUrl}/readyz`, { signal: AbortSignal.timeout(500) }).then(
                r => r.ok,
                () => false
            );
            if (ok) break;
            if (i > 200) throw new Error(`pdp did not become ready:\n${output()}`);
            await new Promise(r => setTimeout(r, 100));
        }
    } catch (err) {
        await stop();
        throw err;
    }
    return { output, stop };
}

function pdpBinary(tmp) {
    if (process.env.PDP_BIN) return process.env.PDP_BIN;
    const bin = join(tmp, 'pdp');
    execFileSync('go', ['build', '-o', bin, './cmd/pdp'], { cwd: root, stdio: 'inherit' });
    return bin;
}

/**
 * Starts the AS and the PDP for the given resource URIs.
 * @param {string[]} resources
 * @param {object} [o]
 * @param {Record<string, number>} [o.limits]  the PDP's `limits` (e.g. {rate_per_pep: 0.05, rate_burst: 1})
 * @param {{port: number, upstreams: Record<string, string>}} [o.gateway]  the PDP's gateway on port: each resource URI
 *        in upstreams (they are also resources) behind it, forwarded to its upstream.url
 * @param {string[]} [o.structuredDenials]  resource URIs whose denials carry the SEP-2643 envelope (structured_denials: true)
 * @returns {{as, pdpUrl, tmp, pdpOutput: () => string, stopPdp: () => Promise<void>, close: () => Promise<void>}}
 */
export async function startEnv(resources, { limits, gateway, structuredDenials = [] } = {}) {
    const tmp = mkdtempSync(join(tmpdir(), 'pdp-ts-test.'));
    const as = await startAS({ scopes: [SCOPE_A, SCOPE_B] });
    let pdp;
    try {
        const bin = pdpBinary(tmp);
        const policy = join(tmp, 'policy');
        mkdirSync(join(policy, 'lib'), { recursive: true });
        const src = join(root, 'policies');
        for (const f of readdirSync(src)) if (f.endsWith('.rego') && !f.endsWith('_test.rego')) copyFileSync(join(src, f), join(policy, f));
        for (const f of readdirSync(join(src, 'lib'))) if (f.endsWith('.rego') && !f.endsWith('_test.rego')) copyFileSync(join(src, 'lib', f), join(policy, 'lib', f));
        writeFileSync(
            join(policy, 'data.yaml'),
            `mcp:
  default_catalog: test
  resources: {}
  revoked: {clients: {}, subjects: {}}
  hidden: []
  catalogs:
    test:
${CATALOG}
`
        );
        const [apiPort] = await freePorts(1);
        const pdpUrl = `http://127.0.0.1:${apiPort}`;
        const config = join(tmp, 'pdp.yaml');
        writeFileSync(
            config,
            `listen: 127.0.0.1:${apiPort}
data_dir: ${join(tmp, 'data')}
instance: ts-pep-test
resources:
${[...resources, ...Object.keys(gateway?.upstreams ?? {})]
    .map(
        uri => `  - uri: ${uri}
    issuer: ${as.issuer}
    jwks_uri: ${as.jwksUri}
    scopes_supported: [${SCOPE_A}, ${SCOPE_B}]
    challenge_scopes: accumulate${structuredDenials.includes(uri) ? '\n    structured_denials: true' : ''}${gateway?.upstreams?.[uri] ? `\n    upstream:\n      url: ${gateway.upstreams[uri]}` : ''}`
    )
    .join('\n')}
${gateway ? `gateway:\n  listen: 127.0.0.1:${gateway.port}\n` : ''}policy:
  path: ${policy}
  poll_interval: 0s
audit:
  enabled: false
log:
  level: warn
${limits ? `limits:\n${Object.entries(limits).map(([k, v]) => `  ${k}: ${v}`).join('\n')}\n` : ''}`
        );
        pdp = await spawnPdp(bin, ['serve', '--config', config], pdpUrl);
        const { output: pdpOutput, stop: stopPdp } = pdp;
        return {
            as,
            pdpUrl,
            tmp,
            pdpOutput,
            stopPdp,
            async close() {
                await stopPdp();
                await as.close();
                if (process.env.KEEP_TMP === '1') console.error(`kept ${tmp}`);
                else rmSync(tmp, { recursive: true, force: true });
            }
        };
    } catch (err) {
        await pdp?.stop();
        await as.close();
        rmSync(tmp, { recursive: true, force: true });
        throw err;
    }
}

/**
 * Starts a dev PDP (`pdp serve --dev`: its dev issuer, the demo policy, an
 * embedded NATS; DPoP "allowed" on its resources) for the given resource
 * URIs, and optionally a second PDP (`pdp serve --config`) whose resources
 * trust the dev issuer, with extra keys for each (e.g. `dpop_nonce: true`).
 * mint() issues dev tokens (`pdp token`; jkt binds one to a DPoP key).
 * @param {string[]} resources
 * @param {object} [o]
 * @param {string[]} [o.configResources]  the second PDP's resource URIs
 * @param {string} [o.configExtra]        YAML lines added to each of its resources (indented 4)
 */
export async function startDevEnv(resources, { configResources = [], configExtra = '' } = {}) {
    const tmp = mkdtempSync(join(tmpdir(), 'pdp-ts-dev.'));
    const stops = [];
    const close = async () => {
        for (const stop of stops.reverse()) await stop();
        if (process.env.KEEP_TMP === '1') console.error(`kept ${tmp}`);
        else rmSync(tmp, { recursive: true, force: true });
    };
    try {
        const bin = pdpBinary(tmp);
        const [devPort, cfgPort] = await freePorts(2);
        const pdpUrl = `http://127.0.0.1:${devPort}`;
        const dataDir = join(tmp, 'dev');
        const dev = await spawnPdp(bin, ['serve', '--dev', '--listen', `127.0.0.1:${devPort}`, '--data-dir', dataDir, ...resources.flatMap(r => ['--resource', r])], pdpUrl);
        stops.push(dev.stop);
        let configUrl;
        if (configResources.length > 0) {
            configUrl = `http://127.0.0.1:${cfgPort}`;
            const config = join(tmp, 'pdp.yaml');
            writeFileSync(
                config,
                `listen: 127.0.0.1:${cfgPort}
data_dir: ${join(tmp, 'data')}
instance: ts-pep-dpop-test
resources:
${configResources
    .map(
        uri => `  - uri: ${uri}
    issuer: ${pdpUrl}/dev
    jwks_uri: ${pdpUrl}/dev/jwks.json
${configExtra}`
    )
    .join('\n')}
audit:
  enabled: false
log:
  level: warn
`
            );
            const second = await spawnPdp(bin, ['serve', '--config', config], configUrl);
            stops.push(second.stop);
        }
        return {
            pdpUrl,
            configUrl,
            tmp,
            devOutput: dev.output,
            /** A dev token for aud (scope: space-delimited; jkt: the DPoP key's thumbprint, binding the token to it). */
            mint: ({ aud, scope = '', sub = 'alice', jkt } = {}) =>
                execFileSync(bin, ['token', '--data-dir', dataDir, '--aud', aud, '--scope', scope, '--sub', sub, ...(jkt ? ['--jkt', jkt] : [])], { encoding: 'utf8' }).trim(),
            close
        };
    } catch (err) {
        await close();
        throw err;
    }
}
