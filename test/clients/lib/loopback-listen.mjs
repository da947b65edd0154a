// Preload (node --import) for a third-party server that listens on every
// interface (express's app.listen(PORT), as server-everything's Streamable
// HTTP mode does): a listen(port[, callback]) without a host binds to
// 127.0.0.1 instead, so that the client tests stay on loopback. The server's
// own code is not touched.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
    const portOnly = typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]));
    if (portOnly && (args.length === 1 || typeof args[1] === 'function')) args.splice(1, 0, '127.0.0.1');
    return listen.apply(this, args);
};
