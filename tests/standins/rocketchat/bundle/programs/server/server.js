// The STAND-IN Rocket.Chat server (tests/standins/README.md). Not Rocket.Chat: what the
// appliance relies on, with Rocket.Chat 4.8's semantics:
//   - environment: ROOT_URL (served below its path), PORT, BIND_IP, MONGO_URL (required),
//     MONGO_OPLOG_URL (when set, must be the `local` database of a replica set: Meteor tails
//     its oplog.rs), ADMIN_USERNAME/ADMIN_PASS/ADMIN_EMAIL/ADMIN_NAME (the first
//     administrator, made when the database has none), OVERWRITE_SETTING_<id> (applied at every
//     start);
//   - settings in the collection rocketchat_settings: inserted with their defaults at the first
//     start only (Site_Url's default is ROOT_URL, so a later ROOT_URL changes nothing without
//     OVERWRITE_SETTING_Site_Url);
//   - REST: GET api/info; POST api/v1/login ({user|username, password} with the password in
//     clear or as {digest, algorithm: "sha-256"}); GET api/v1/me; POST api/v1/logout;
//     GET api/v1/settings/:id; POST api/v1/settings/:id ({value}) only with the second factor:
//     without TOTP or e-mail codes, headers x-2fa-method: password and x-2fa-code: the SHA-256
//     (hex) of the password, else 400 totp-required / totp-invalid.
// Users' passwords are kept as PBKDF2 of the password's SHA-256 (Rocket.Chat: bcrypt of it) and
// login tokens as their SHA-256 (base64), as Rocket.Chat keeps them.
'use strict';
const crypto = require('crypto');
const http = require('http');
const { MongoClient } = require('mongodb');

const VERSION = '4.8.7';

function fail(message) {
  console.error(`Rocket.Chat (stand-in): ${message}`);
  process.exit(1);
}

const rootUrl = process.env.ROOT_URL || fail('ROOT_URL is not set');
let prefix;
try {
  prefix = new URL(rootUrl).pathname.replace(/\/+$/, '');
} catch (e) {
  fail(`ROOT_URL '${rootUrl}' is not a URL`);
}
const port = Number(process.env.PORT || 3000);
const bindIp = process.env.BIND_IP || '0.0.0.0';
const mongoUrl = process.env.MONGO_URL || fail('MONGO_URL must be set (the MongoDB of Rocket.Chat)');
const oplogUrl = process.env.MONGO_OPLOG_URL;

// Rocket.Chat 4.8's defaults of the settings the appliance reads or writes.
const DEFAULTS = {
  Site_Url: rootUrl,
  Site_Name: 'Rocket.Chat',
  Show_Setup_Wizard: 'pending',
  Jitsi_Enabled: false,
  Jitsi_Domain: 'meet.jit.si',
  Jitsi_URL_Room_Prefix: 'RocketChat',
  Jitsi_URL_Room_Suffix: '',
  Jitsi_SSL: true,
  Jitsi_Open_New_Window: false,
  Jitsi_Enable_Channels: false,
};

const sha256hex = (text) => crypto.createHash('sha256').update(text).digest('hex');
const hashToken = (token) => crypto.createHash('sha256').update(token).digest('base64');

function passwordRecord(digest) {
  const salt = crypto.randomBytes(16).toString('hex');
  const hash = crypto.pbkdf2Sync(digest, salt, 10000, 32, 'sha256').toString('hex');
  return { salt, hash };
}

function passwordMatches(record, digest) {
  if (!record || !record.salt) return false;
  const hash = crypto.pbkdf2Sync(digest, record.salt, 10000, 32, 'sha256').toString('hex');
  return crypto.timingSafeEqual(Buffer.from(hash), Buffer.from(record.hash));
}

async function connect(url, what) {
  let lastError;
  for (let i = 0; i < 30; i++) {
    try {
      return await MongoClient.connect(url, { useUnifiedTopology: true, serverSelectionTimeoutMS: 2000 });
    } catch (e) {
      lastError = e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  return fail(`cannot connect to ${what}: ${lastError && lastError.message}`);
}

async function main() {
  const client = await connect(mongoUrl, 'MONGO_URL');
  const db = client.db();
  if (oplogUrl) {
    const oplog = await connect(oplogUrl, 'MONGO_OPLOG_URL');
    const local = oplog.db();
    const found = await local.listCollections({ name: 'oplog.rs' }).toArray();
    if (local.databaseName !== 'local' || found.length === 0) {
      fail("$MONGO_OPLOG_URL must be set to the 'local' database of a Mongo replica set");
    }
    console.log('Rocket.Chat (stand-in): tailing the oplog of the replica set');
  }
  const settings = db.collection('rocketchat_settings');
  const users = db.collection('users');

  for (const [id, value] of Object.entries(DEFAULTS)) {
    await settings.updateOne({ _id: id }, { $setOnInsert: { value, packageValue: value } }, { upsert: true });
  }
  for (const [name, text] of Object.entries(process.env)) {
    if (!name.startsWith('OVERWRITE_SETTING_')) continue;
    const id = name.slice('OVERWRITE_SETTING_'.length);
    const current = await settings.findOne({ _id: id });
    let value = text;
    if (current && typeof current.value === 'boolean') value = text === 'true';
    else if (current && typeof current.value === 'number') value = Number(text);
    await settings.updateOne({ _id: id }, { $set: { value } }, { upsert: true });
  }

  if (process.env.ADMIN_PASS && !(await users.findOne({ roles: 'admin' }))) {
    const username = process.env.ADMIN_USERNAME || 'admin';
    const user = {
      _id: crypto.randomBytes(9).toString('hex'),
      username,
      name: process.env.ADMIN_NAME || 'Administrator',
      emails: process.env.ADMIN_EMAIL ? [{ address: process.env.ADMIN_EMAIL, verified: true }] : [],
      roles: ['admin'],
      type: 'user',
      active: true,
      services: { password: passwordRecord(sha256hex(process.env.ADMIN_PASS)), resume: { loginTokens: [] } },
      createdAt: new Date(),
    };
    await users.insertOne(user);
    console.log(`Rocket.Chat (stand-in): inserted the administrator ${username} from the environment`);
  }

  const send = (res, code, body) => {
    const data = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
    res.end(data);
  };
  const authed = async (req) => {
    const token = req.headers['x-auth-token'];
    const id = req.headers['x-user-id'];
    if (!token || !id) return null;
    return users.findOne({ _id: id, 'services.resume.loginTokens.hashedToken': hashToken(token) });
  };

  const handle = async (req, res, body) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) {
      return send(res, 404, { success: false, error: 'Not found' });
    }
    const path = url.pathname.slice(prefix.length) || '/';
    if (req.method === 'GET' && path === '/') {
      const site = await settings.findOne({ _id: 'Site_Url' });
      res.writeHead(200, { 'Content-Type': 'text/html' });
      return res.end(`<!DOCTYPE html><title>Rocket.Chat (stand-in)</title><p>Rocket.Chat (stand-in) at ${site.value}</p>\n`);
    }
    if (req.method === 'GET' && path === '/api/info') {
      const user = await authed(req);
      return send(res, 200, user ? { info: { version: VERSION }, success: true } : { version: VERSION, success: true });
    }
    if (req.method === 'POST' && path === '/api/v1/login') {
      let args;
      try {
        args = JSON.parse(body || '{}');
      } catch (e) {
        return send(res, 400, { status: 'error', error: 'Invalid JSON' });
      }
      const name = args.user || args.username;
      let digest = null;
      if (typeof args.password === 'string') digest = sha256hex(args.password);
      else if (args.password && args.password.algorithm === 'sha-256') digest = args.password.digest;
      const user = name && digest ? await users.findOne({ $or: [{ username: name }, { 'emails.address': name }] }) : null;
      if (!user || !passwordMatches(user.services.password, digest)) {
        return send(res, 401, { status: 'error', error: 'Unauthorized', message: 'Unauthorized' });
      }
      const token = crypto.randomBytes(32).toString('base64').replace(/[^A-Za-z0-9]/g, '');
      await users.updateOne({ _id: user._id }, { $push: { 'services.resume.loginTokens': { hashedToken: hashToken(token), when: new Date() } } });
      return send(res, 200, {
        status: 'success',
        data: { userId: user._id, authToken: token, me: { _id: user._id, username: user.username, roles: user.roles } },
      });
    }
    if (!path.startsWith('/api/v1/')) return send(res, 404, { success: false, error: 'Not found' });
    const user = await authed(req);
    if (!user) return send(res, 401, { status: 'error', message: 'You must be logged in to do this.' });
    if (req.method === 'GET' && path === '/api/v1/me') {
      return send(res, 200, { _id: user._id, username: user.username, name: user.name, emails: user.emails, roles: user.roles, success: true });
    }
    if (req.method === 'POST' && path === '/api/v1/logout') {
      await users.updateOne({ _id: user._id }, { $pull: { 'services.resume.loginTokens': { hashedToken: hashToken(req.headers['x-auth-token']) } } });
      return send(res, 200, { status: 'success', data: { message: "You've been logged out!" } });
    }
    const m = path.match(/^\/api\/v1\/settings\/([A-Za-z0-9_.-]+)$/);
    if (m) {
      if (!user.roles.includes('admin')) return send(res, 403, { success: false, error: 'error-not-allowed' });
      const setting = await settings.findOne({ _id: m[1] });
      if (req.method === 'GET') {
        if (!setting) return send(res, 400, { success: false, error: `Setting ${m[1]} not found` });
        return send(res, 200, { _id: setting._id, value: setting.value, success: true });
      }
      if (req.method === 'POST') {
        const code = req.headers['x-2fa-code'];
        const method = req.headers['x-2fa-method'];
        if (!code || !method) {
          return send(res, 400, { success: false, error: 'TOTP Required [totp-required]', errorType: 'totp-required', details: { method: 'password' } });
        }
        if (method !== 'password' || !passwordMatches(user.services.password, String(code))) {
          return send(res, 400, { success: false, error: 'TOTP Invalid [totp-invalid]', errorType: 'totp-invalid', details: { method: 'password' } });
        }
        if (!setting) return send(res, 400, { success: false, error: `Setting ${m[1]} not found` });
        let args;
        try {
          args = JSON.parse(body || '{}');
        } catch (e) {
          return send(res, 400, { success: false, error: 'Invalid JSON' });
        }
        if (!('value' in args)) return send(res, 400, { success: false, error: 'Match error: missing value' });
        if (typeof args.value !== typeof setting.value) {
          return send(res, 400, { success: false, error: `Invalid value type for ${m[1]}` });
        }
        await settings.updateOne({ _id: m[1] }, { $set: { value: args.value, _updatedAt: new Date() } });
        return send(res, 200, { success: true });
      }
    }
    return send(res, 404, { success: false, error: 'Not found' });
  };

  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      handle(req, res, body).catch((e) => {
        console.error(e);
        send(res, 500, { success: false, error: 'Internal server error' });
      });
    });
  });
  server.listen(port, bindIp, () => {
    console.log(`Rocket.Chat (stand-in) ${VERSION} at ${rootUrl}, listening on ${bindIp}:${port}`);
  });
}

main().catch((e) => fail(e.stack || String(e)));
