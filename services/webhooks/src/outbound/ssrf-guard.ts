import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction, type Socket } from 'node:net';
import { buildConnector } from 'undici';

/**
 * The SSRF guard of outbound deliveries: an endpoint URL never makes the service reach a
 * loopback, private, link-local, CGNAT, metadata, multicast or otherwise non-public address.
 *
 * Three checks, so that no form gets through and no second DNS answer can differ:
 * 1. An IP literal in the URL is checked before connecting (Node does not call a lookup for it).
 * 2. A host name is resolved once by the connection's own `lookup`, and only the addresses that
 *    pass are handed to the socket: the connection goes to a checked address, with no second
 *    lookup a rebinding name could answer differently.
 * 3. The address actually connected (socket.remoteAddress) is checked again before a byte of
 *    the request is written: a backstop for any path the first two miss.
 * IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible forms are checked as the IPv4 address they
 * carry; IPv4-translated (::ffff:0:a.b.c.d), NAT64, 6to4 and Teredo prefixes are refused whole (they
 * reach IPv4 hosts we cannot see).
 *
 * `allowedHosts` (WEBHOOKS_ALLOWED_HOSTS) lets local development and tests through: an entry is an
 * IP, a CIDR block or a host name, each optionally with :port. A name entry allows whatever the
 * name resolves to; an address entry allows that address (or block).
 */

/** Refused by the guard: the delivery fails at once (outcome 'blocked'), retrying cannot help. */
export class BlockedAddressError extends Error {
  readonly code = 'ERR_WEBHOOK_ADDRESS_BLOCKED';
  constructor(message: string) {
    super(message);
    this.name = 'BlockedAddressError';
  }
}

const BLOCKED_V4: readonly [string, number][] = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, incl. cloud metadata 169.254.169.254
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
];

const BLOCKED_V6: readonly [string, number][] = [
  ['::', 96], // unspecified, loopback, IPv4-compatible (deprecated)
  ['::ffff:0:0:0', 96], // IPv4-translated (SIIT, RFC 2765): a translator carries it to the IPv4 address
  ['64:ff9b::', 96], // NAT64
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 23], // IETF protocol assignments, incl. Teredo 2001::/32
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4
  ['3fff::', 20], // documentation
  ['5f00::', 16], // SRv6 SIDs
  ['fc00::', 7], // unique local, incl. AWS metadata fd00:ec2::254
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
];

const blocked = new BlockList();
for (const [net, prefix] of BLOCKED_V4) blocked.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of BLOCKED_V6) blocked.addSubnet(net, prefix, 'ipv6');
// Named for the reader; both already fall in blocks above.
blocked.addAddress('169.254.169.254', 'ipv4');
blocked.addAddress('fd00:ec2::254', 'ipv6');

/**
 * The 16 bytes of an IPv6 address (zone and brackets stripped, a trailing dotted quad allowed),
 * or undefined when it is not one.
 */
function ipv6Bytes(text: string): Uint8Array | undefined {
  let s = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (isIP(s) !== 6) return undefined;
  const words: number[] = [];
  const parse = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const group of part.split(':')) {
      if (group.includes('.')) {
        const [a, b, c, d] = group.split('.').map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(Number.parseInt(group, 16));
      }
    }
    return out;
  };
  const gap = s.indexOf('::');
  if (gap >= 0) {
    const head = parse(s.slice(0, gap));
    const tail = parse(s.slice(gap + 2));
    words.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  } else {
    words.push(...parse(s));
  }
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

/** The IPv4 address an IPv4-mapped IPv6 address (::ffff:a.b.c.d) carries, or undefined. */
function mappedIpv4(address: string): string | undefined {
  const b = ipv6Bytes(address);
  if (!b) return undefined;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return undefined;
  if (b[10] !== 0xff || b[11] !== 0xff) return undefined;
  return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
}

/**
 * Why `address` (an IPv4 or IPv6 address, brackets and zone allowed) must not be reached, or
 * undefined when it is public. Anything that is not an IP address is refused.
 */
export function blockedAddressReason(address: string): string | undefined {
  let a = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const family = isIP(a);
  if (family === 0) return `not an IP address: ${address}`;
  if (family === 6) {
    const v4 = mappedIpv4(a);
    if (v4 !== undefined)
      return blocked.check(v4, 'ipv4') ? `non-public address ${address} (${v4})` : undefined;
    return blocked.check(a, 'ipv6') ? `non-public address ${address}` : undefined;
  }
  return blocked.check(a, 'ipv4') ? `non-public address ${address}` : undefined;
}

interface AllowedEntry {
  readonly host?: string;
  readonly net?: BlockList;
  readonly port?: number;
}

/** Parses WEBHOOKS_ALLOWED_HOSTS entries: `1.2.3.4`, `10.0.0.0/8`, `[::1]:8080`, `::1`, `fd00::/8`, `name`, `name:443`. */
function parseAllowed(entries: readonly string[]): AllowedEntry[] {
  const out: AllowedEntry[] = [];
  for (const raw of entries) {
    const entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    let host = entry;
    let port: number | undefined;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (bracketed) {
      host = bracketed[1] as string;
      port = bracketed[2] ? Number(bracketed[2]) : undefined;
    } else if ((entry.match(/:/g) ?? []).length === 1) {
      const i = entry.lastIndexOf(':');
      host = entry.slice(0, i);
      port = Number(entry.slice(i + 1));
    }
    const [addr, prefixText] = host.split('/') as [string, string | undefined];
    const family = isIP(addr);
    if (family === 0) {
      out.push({ host, port });
      continue;
    }
    const net = new BlockList();
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefixText !== undefined) net.addSubnet(addr, Number(prefixText), type);
    else net.addAddress(addr, type);
    out.push({ net, port });
  }
  return out;
}

export interface SsrfGuardSettings {
  readonly allowedHosts: readonly string[];
  readonly httpsOnly: boolean;
}

/** Decides which URLs and addresses outbound requests may reach (see the module comment). */
export class SsrfGuard {
  readonly #allowed: readonly AllowedEntry[];
  readonly #httpsOnly: boolean;

  constructor(settings: SsrfGuardSettings) {
    this.#allowed = parseAllowed(settings.allowedHosts);
    this.#httpsOnly = settings.httpsOnly;
  }

  /** True when an allowlist entry names this host (by name) and port. */
  #hostAllowed(hostname: string, port: number): boolean {
    const h = hostname.toLowerCase();
    return this.#allowed.some((e) => e.host === h && (e.port === undefined || e.port === port));
  }

  /** True when an allowlist entry covers this address and port. */
  #addressAllowed(address: string, port: number): boolean {
    let a = address.startsWith('[') ? address.slice(1, -1) : address;
    const v4 = isIP(a) === 6 ? mappedIpv4(a) : undefined;
    if (v4) a = v4;
    const type = isIP(a) === 4 ? 'ipv4' : 'ipv6';
    return this.#allowed.some((e) => e.net?.check(a, type) && (e.port === undefined || e.port === port));
  }

  /** Why this address:port must not be reached, or undefined when it may. */
  addressRefusal(address: string, port: number): string | undefined {
    if (this.#addressAllowed(address, port)) return undefined;
    return blockedAddressReason(address);
  }

  /**
   * Checks what can be checked before connecting: the scheme (http/https; https only when so
   * configured) and an IP literal host.
   *
   * @throws BlockedAddressError
   */
  checkUrl(url: URL): void {
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new BlockedAddressError(`unsupported URL scheme ${url.protocol}`);
    if (this.#httpsOnly && url.protocol !== 'https:')
      throw new BlockedAddressError('only https endpoint URLs are allowed (WEBHOOKS_HTTPS_ONLY)');
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    if (isIP(host) === 0 || this.#hostAllowed(host, port)) return;
    const reason = this.addressRefusal(host, port);
    if (reason) throw new BlockedAddressError(reason);
  }

  /**
   * The socket's DNS lookup: resolves once and answers only the addresses that pass (all of
   * them when the name itself is allowed); none passing is a BlockedAddressError.
   */
  #lookup(port: number, nameAllowed: boolean): LookupFunction {
    return (name, lookupOptions, cb) => {
      dnsLookup(name, { ...lookupOptions, all: true }, (err, addresses: LookupAddress[]) => {
        if (err) {
          cb(err, '', 0);
          return;
        }
        const usable = nameAllowed
          ? addresses
          : addresses.filter((a) => this.addressRefusal(a.address, port) === undefined);
        const first = usable[0];
        if (!first) {
          const list = addresses.map((a) => a.address).join(', ');
          cb(new BlockedAddressError(`${name} resolves only to non-public addresses (${list})`), '', 0);
          return;
        }
        // With autoSelectFamily (the default) the socket asks for all addresses.
        if (lookupOptions.all) (cb as unknown as (e: null, a: LookupAddress[]) => void)(null, usable);
        else cb(null, first.address, first.family);
      });
    };
  }

  /**
   * An undici connector that resolves names once, connects only to addresses that pass, and
   * checks the connected address before handing the socket over. `connectTimeoutMs` bounds
   * the TCP (and TLS) connect.
   */
  connector(connectTimeoutMs: number): buildConnector.connector {
    // One base connector per (port, name allowed): each keeps its TLS session cache.
    const bases = new Map<string, buildConnector.connector>();
    return (options, callback) => {
      const hostname = options.hostname.startsWith('[') ? options.hostname.slice(1, -1) : options.hostname;
      const port = Number(options.port || (options.protocol === 'https:' ? 443 : 80));
      const nameAllowed = isIP(hostname) === 0 && this.#hostAllowed(hostname, port);
      if (!nameAllowed && isIP(hostname) !== 0) {
        const reason = this.addressRefusal(hostname, port);
        if (reason) {
          callback(new BlockedAddressError(reason), null);
          return;
        }
      }
      const key = `${port}:${nameAllowed}`;
      let base = bases.get(key);
      if (!base) {
        base = buildConnector({ timeout: connectTimeoutMs, lookup: this.#lookup(port, nameAllowed) });
        bases.set(key, base);
      }
      base(options, (err, socket) => {
        if (err || !socket) {
          callback(err ?? new Error('connect failed'), null);
          return;
        }
        const remote = (socket as Socket).remoteAddress;
        const reason = nameAllowed
          ? undefined
          : remote === undefined
            ? 'connected address unknown'
            : this.addressRefusal(remote, port);
        if (reason) {
          socket.destroy();
          callback(new BlockedAddressError(reason), null);
          return;
        }
        callback(null, socket);
      });
    };
  }
}
