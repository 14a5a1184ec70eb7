// The peer for the side-by-side benchmark: node-oidc-provider (panva/node-oidc-provider,
// OpenID Certified) configured like our provider, behind a plain Node.js HTTP server.
//
// bench/run.py copies this file next to the node_modules it installs (.cache/bench/...)
// and starts it with `node server.mjs`; it is configured only through the environment:
//
//   PEER_PORT, PEER_WORKERS       listen port; cluster workers (one process per core)
//   PEER_REDIS_URL, PEER_PREFIX   Redis adapter (every model lives in Redis, like ours)
//   PEER_CLIENT_ID, PEER_CLIENT_SECRET, PEER_REDIRECT_URI
//   PEER_USERS, PEER_PASSWORD, PEER_TOTP_SECRET (base32)
//   PEER_JWK, PEER_ALG            the signing key and its algorithm (RS256 or ES256)
//
// Equivalences with our provider (see docs/PERFORMANCE.md for the differences):
// RS256 (or ES256: PEER_ALG) signing key; JWT access tokens (RFC 9068, via a resource
// indicator); refresh tokens rotated on every use (reuse revokes the grant);
// client_credentials; the authorization code flow with PKCE S256; sign-in interaction =
// password (argon2id, m=19456 KiB, t=2, p=1) then a TOTP code (RFC 6238, SHA-1, 6 digits,
// 30 s, one use per step); acr urn:idp:acr:mfa, amr pwd+otp; first-party client (no
// consent page).
//
// `node server.mjs --hash-cost N` prints the CPU milliseconds of one argon2id verify
// (averaged over N) and exits.

import cluster from 'node:cluster';
import crypto from 'node:crypto';
import http from 'node:http';

import argon2 from 'argon2';
import Redis from 'ioredis';
import Provider from 'oidc-provider';

const env = process.env;
const PORT = Number(env.PEER_PORT || 3000);
// The signing algorithm of ID and access tokens (PEER_JWK's key): RS256 or ES256.
const ALG = env.PEER_ALG || 'RS256';
const ISSUER = `http://127.0.0.1:${PORT}`;
const PREFIX = env.PEER_PREFIX || 'peer:';
const RESOURCE = 'urn:idp-bench:api';
const ACR = 'urn:idp:acr:mfa';
const ARGON2 = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 };

async function hashCost(n) {
  const hash = await argon2.hash('a perfectly fine passphrase', ARGON2);
  await argon2.verify(hash, 'a perfectly fine passphrase');
  const start = process.cpuUsage();
  for (let i = 0; i < n; i += 1) {
    await argon2.verify(hash, 'a perfectly fine passphrase');
  }
  const used = process.cpuUsage(start);
  console.log(((used.user + used.system) / 1000 / n).toFixed(3));
}

// -- TOTP (RFC 6238 / RFC 4226), the same computation as pyotp -------------------------
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of text.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(ch);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function totpAt(key, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1000000;
  return String(code).padStart(6, '0');
}

// -- Redis adapter (after the project's example adapter) --------------------------------
const redis = new Redis(env.PEER_REDIS_URL || 'redis://127.0.0.1:6379/0', {
  keyPrefix: PREFIX,
  lazyConnect: false,
});
const grantable = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);
const consumable = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode']);

class RedisAdapter {
  constructor(name) {
    this.name = name;
  }

  key(id) {
    return `${this.name}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const multi = redis.multi();
    if (consumable.has(this.name)) {
      multi.hset(key, { payload: JSON.stringify(payload) });
    } else {
      multi.set(key, JSON.stringify(payload));
    }
    if (expiresIn) multi.expire(key, expiresIn);
    if (grantable.has(this.name) && payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      multi.rpush(grantKey, key);
      const ttl = await redis.ttl(grantKey);
      if (expiresIn > ttl) multi.expire(grantKey, expiresIn);
    }
    if (payload.uid) {
      multi.set(`sessionUid:${payload.uid}`, id);
      if (expiresIn) multi.expire(`sessionUid:${payload.uid}`, expiresIn);
    }
    await multi.exec();
  }

  async find(id) {
    const key = this.key(id);
    const data = consumable.has(this.name) ? await redis.hgetall(key) : await redis.get(key);
    if (!data || (typeof data === 'object' && Object.keys(data).length === 0)) return undefined;
    if (typeof data === 'string') return JSON.parse(data);
    const { payload, ...rest } = data;
    return { ...rest, ...JSON.parse(payload) };
  }

  async findByUid(uid) {
    const id = await redis.get(`sessionUid:${uid}`);
    return id ? this.find(id) : undefined;
  }

  async findByUserCode() {
    return undefined;
  }

  async destroy(id) {
    await redis.del(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const grantKey = `grant:${grantId}`;
    // keyPrefix is applied by ioredis to the keys we pass, so strip it from stored ones.
    const keys = await redis.lrange(grantKey, 0, -1);
    const multi = redis.multi();
    for (const key of keys) multi.del(key);
    multi.del(grantKey);
    await multi.exec();
  }

  async consume(id) {
    await redis.hset(this.key(id), 'consumed', Math.floor(Date.now() / 1000));
  }
}

// -- accounts: in memory (ours reads them from PostgreSQL) -------------------------------
async function makeAccounts() {
  const count = Number(env.PEER_USERS || 1000);
  const hash = await argon2.hash(env.PEER_PASSWORD, ARGON2);
  const totpKey = base32Decode(env.PEER_TOTP_SECRET);
  const byEmail = new Map();
  const byId = new Map();
  for (let i = 0; i < count; i += 1) {
    const account = {
      // Stable across cluster workers: every worker builds the same table.
      id: crypto.createHash('sha256').update(`bench${i}`).digest('hex').slice(0, 32),
      email: `bench${i}@example.com`,
      hash,
      totpKey,
    };
    byEmail.set(account.email, account);
    byId.set(account.id, account);
  }
  return { byEmail, byId };
}

function page(res, status, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!doctype html><html><body>${body}</body></html>`);
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      raw += chunk;
      if (raw.length > 8192) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(raw)));
    req.on('error', reject);
  });
}

async function start() {
  const accounts = await makeAccounts();
  const jwk = JSON.parse(env.PEER_JWK);
  const provider = new Provider(ISSUER, {
    adapter: RedisAdapter,
    clients: [
      {
        client_id: env.PEER_CLIENT_ID,
        client_secret: env.PEER_CLIENT_SECRET,
        redirect_uris: [env.PEER_REDIRECT_URI],
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: ALG,
        scope: 'openid email profile offline_access api',
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: [env.PEER_COOKIE_KEY] },
    acrValues: [ACR],
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    scopes: ['openid', 'email', 'profile', 'offline_access', 'api'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api',
          audience: RESOURCE,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: ALG } },
        }),
      },
    },
    ttl: {
      AccessToken: 300,
      ClientCredentials: 300,
      IdToken: 600,
      AuthorizationCode: 60,
      RefreshToken: 2592000,
      Interaction: 900,
      Session: 43200,
      Grant: 2592000,
    },
    // Our provider issues a refresh token to any client allowed the grant, and rotates it
    // on every use (reuse revokes the family): the same here.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    // First-party client: no consent page (ours: first_party=True).
    loadExistingGrant: async (ctx) => {
      const grantId =
        ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile offline_access');
      grant.addResourceScope(RESOURCE, 'api');
      await grant.save();
      return grant;
    },
    findAccount: async (ctx, id) => {
      const account = accounts.byId.get(id);
      if (!account) return undefined;
      return {
        accountId: id,
        claims: async () => ({ sub: id, email: account.email, email_verified: true }),
      };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  });

  async function interaction(req, res, url) {
    const parts = url.pathname.split('/'); // ["", "interaction", uid, step?]
    const step = parts[3];
    const details = await provider.interactionDetails(req, res);
    const pending = details.result?.pendingAccount;
    if (req.method === 'GET') {
      if (pending) {
        return page(
          res,
          200,
          `<form method="post" action="/interaction/${details.uid}/totp">` +
            '<label>Code <input name="code" autocomplete="one-time-code"></label>' +
            '<button>Verify</button></form>',
        );
      }
      return page(
        res,
        200,
        `<form method="post" action="/interaction/${details.uid}/login">` +
          '<label>Email <input name="email"></label>' +
          '<label>Password <input name="password" type="password"></label>' +
          '<button>Sign in</button></form>',
      );
    }
    const form = await readForm(req);
    if (step === 'login') {
      const account = accounts.byEmail.get(form.get('email') || '');
      const ok = account
        ? await argon2.verify(account.hash, form.get('password') || '')
        : false;
      if (!ok) return page(res, 401, '<p>Wrong email or password.</p>');
      await provider.interactionResult(req, res, { pendingAccount: account.id });
      res.statusCode = 303;
      res.setHeader('Location', `/interaction/${details.uid}`);
      return res.end();
    }
    if (step === 'totp' && pending) {
      const account = accounts.byId.get(pending);
      const code = form.get('code') || '';
      const now = Math.floor(Date.now() / 30000);
      let matched = 0;
      for (const at of [now - 1, now, now + 1]) {
        const expected = totpAt(account.totpKey, at);
        if (code.length === 6 && crypto.timingSafeEqual(Buffer.from(code), Buffer.from(expected))) {
          matched = at;
        }
      }
      // Replay protection: each step is accepted once per account (ours: last_step in
      // PostgreSQL); shared by all cluster workers through Redis.
      const fresh =
        matched && (await redis.set(`totp:${pending}:${matched}`, '1', 'EX', 120, 'NX'));
      if (!fresh) return page(res, 401, '<p>That code did not work.</p>');
      return provider.interactionFinished(
        req,
        res,
        { login: { accountId: pending, acr: ACR, amr: ['pwd', 'otp'] } },
        { mergeWithLastSubmission: false },
      );
    }
    return page(res, 400, '<p>Bad request.</p>');
  }

  const callback = provider.callback();
  http
    .createServer((req, res) => {
      const url = new URL(req.url, ISSUER);
      if (url.pathname.startsWith('/interaction/')) {
        interaction(req, res, url).catch((err) => {
          if (!res.headersSent) page(res, 400, `<p>${String(err.message).replace(/</g, '&lt;')}</p>`);
          else res.end();
        });
        return;
      }
      callback(req, res);
    })
    .listen(PORT, '127.0.0.1');
}

if (process.argv[2] === '--hash-cost') {
  await hashCost(Number(process.argv[3] || 20));
  process.exit(0);
} else if (cluster.isPrimary && Number(env.PEER_WORKERS || 1) > 1) {
  for (let i = 0; i < Number(env.PEER_WORKERS); i += 1) cluster.fork();
  cluster.on('exit', (worker, code) => {
    if (code !== 0) console.error(`worker ${worker.process.pid} exited with ${code}`);
  });
} else {
  await start();
}
