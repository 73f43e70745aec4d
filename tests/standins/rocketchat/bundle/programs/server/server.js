// The STAND-IN Rocket.Chat server (tests/standins/README.md). Not Rocket.Chat: what the
// appliance relies on, with the semantics of the Rocket.Chat version in the bundle's
// .standin_version.txt (make-standins writes the profile's rocketchat_version there; the
// server refuses to start without it) and answered by api/info:
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
// Up to 4.x (4.8's semantics): the Jitsi_* settings, no apps.
// From 5.0 on (Jitsi_* left core in 5.0, RocketChat/Rocket.Chat#26404; Jitsi is the Marketplace
// app "Jitsi", RocketChat/Apps.Jitsi), as Rocket.Chat's code reads (develop, 2025/26; cited per
// part below), with the stand-in's own error texts where they are not Rocket.Chat's:
//   - no Jitsi_* settings; VideoConf_Default_Provider (default '');
//   - Rocket.Chat Cloud: env REG_TOKEN at start registers a workspace that is not registered
//     (apps/meteor/app/cloud/server/index.ts), here by setting Cloud_Workspace_Id and
//     Cloud_Workspace_Client_Id; the stand-in "Cloud" accepts any non-empty token, and the
//     token is never logged or stored; GET api/v1/cloud.registrationStatus;
//   - a stand-in Marketplace holding exactly the Jitsi app at 2.1.1 (its manifest and its
//     settings as Apps.Jitsi's app.json and src/settings.ts at tag 2.1.1 declare them); no app
//     code runs (no Apps-Engine, no Deno subprocess): "enabled" is a status in MongoDB;
//   - the apps REST API (apps/meteor/ee/server/apps/communication/rest.ts): POST api/apps
//     ({appId, marketplace: true, version}: refused, 400 {success: false, error}, when the
//     workspace is not registered (it has no token to download with) or the Marketplace has no
//     such app/version; enabled when the Community limit of 5 Marketplace apps allows, else left
//     installed and not enabled), GET api/apps/installed, GET api/apps/:id (404 No App found by
//     the id of: <id>), GET and POST api/apps/:id/settings (a posted setting whose value differs
//     REPLACES the stored object, as Apps-Engine's updateAppSetting does), GET and POST
//     api/apps/:id/status (manually_enabled checks the limit first); apps in the collection
//     rocketchat_apps, so they survive a restart; private (uploaded) apps are not reproduced;
//   - GET api/v1/video-conference.providers: {key: "jitsi", label: "Jitsi"} while the Jitsi app
//     is enabled (apps/meteor/server/lib/videoConfProviders.ts; the app registers the provider).
//   Every apps and cloud route needs the login, and the administrator's role (manage-apps,
//   manage-cloud) where Rocket.Chat asks for a permission.
// Users' passwords are kept as PBKDF2 of the password's SHA-256 (Rocket.Chat: bcrypt of it) and
// login tokens as their SHA-256 (base64), as Rocket.Chat keeps them.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { MongoClient } = require('mongodb');

function fail(message) {
  console.error(`Rocket.Chat (stand-in): ${message}`);
  process.exit(1);
}

// The Rocket.Chat version this stand-in answers as (the profile's pin, written by make-standins).
const versionFile = path.join(__dirname, '..', '..', '.standin_version.txt');
let VERSION = '';
try {
  VERSION = fs.readFileSync(versionFile, 'utf8').trim();
} catch (e) {
  fail(`cannot read the version to answer as: ${e.message}`);
}
if (!/^[0-9]+\.[0-9]+\.[0-9]+$/.test(VERSION)) fail(`${versionFile} holds '${VERSION}', not a version X.Y.Z`);
// From 5.0 on: no Jitsi_* settings; Cloud registration, the Marketplace and the apps API.
const APPS = Number(VERSION.split('.')[0]) >= 5;

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

// Rocket.Chat's defaults of the settings the appliance reads or writes: 4.8's, or from 5.0 on
// the video conference provider and the Cloud workspace's (empty: not registered) instead of
// the Jitsi_* ones.
const DEFAULTS = {
  Site_Url: rootUrl,
  Site_Name: 'Rocket.Chat',
  Show_Setup_Wizard: 'pending',
};
if (APPS) {
  Object.assign(DEFAULTS, {
    uniqueID: crypto.randomBytes(12).toString('hex'),
    VideoConf_Default_Provider: '',
    Cloud_Workspace_Id: '',
    Cloud_Workspace_Client_Id: '',
  });
} else {
  Object.assign(DEFAULTS, {
    Jitsi_Enabled: false,
    Jitsi_Domain: 'meet.jit.si',
    Jitsi_URL_Room_Prefix: 'RocketChat',
    Jitsi_URL_Room_Suffix: '',
    Jitsi_SSL: true,
    Jitsi_Open_New_Window: false,
    Jitsi_Enable_Channels: false,
  });
}

// The stand-in Marketplace: the Jitsi app of RocketChat/Apps.Jitsi at tag 2.1.1. Its manifest
// as app.json has it; its settings as src/settings.ts declares them, one row each:
// [id, type, packageValue, required, public] (i18nLabel is the id, i18nDescription
// `<id>_description`, as there); `provider`: the video conference provider the app registers
// (src/videoConfProvider.ts, name "Jitsi").
const JITSI_SETTINGS = [
  ['jitsi_domain', 'string', 'meet.jit.si', true, true],
  ['jitsi_title_prefix', 'string', 'RocketChat', false, true],
  ['jitsi_title_suffix', 'string', '', false, true],
  ['jitsi_ssl', 'boolean', true, false, true],
  ['jitsi_chrome_extension', 'string', 'nocfbnnmjnndkbipkabodnheejiegccf', false, true],
  ['jitsi_auth_token', 'boolean', false, false, true],
  ['jitsi_application_id', 'string', '', false, false],
  ['jitsi_application_secret', 'string', '', false, false],
  ['jitsi_use_jaas', 'boolean', false, false, false],
  ['jitsi_jaas_private_key', 'string', '', false, false],
  ['jitsi_jaas_api_key_id', 'string', '', false, false],
  ['jitsi_limit_token_to_room', 'boolean', true, false, true],
  ['jitsi_token_auditor', 'string', 'RocketChat', false, false],
  ['jitsi_token_expiration', 'string', 'now + 1hour', false, false],
];
const MARKETPLACE = [
  {
    info: {
      id: '3b387ba9-f57c-44c6-9810-8c0256abd64c',
      version: '2.1.1',
      requiredApiVersion: '^1.33.0',
      name: 'Jitsi',
      nameSlug: 'jitsi',
      description: 'Jitsi Conference Calls Provider',
      author: { name: 'Rocket.Chat Technologies Corp.', homepage: 'https://github.com/RocketChat/Rocket.Chat', support: 'support@rocket.chat' },
      implements: [],
    },
    settings: JITSI_SETTINGS,
    provider: 'Jitsi',
  },
];
// Community edition: at most 5 enabled Marketplace apps (canEnableApp; 0 private apps since 7.0).
const MARKETPLACE_APP_LIMIT = 5;
const ENABLED = ['auto_enabled', 'manually_enabled'];

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
  const settingValue = async (id) => {
    const found = await settings.findOne({ _id: id });
    return found ? found.value : undefined;
  };
  // Rocket.Chat reads REG_TOKEN at start and registers a workspace that is not registered yet.
  if (APPS && process.env.REG_TOKEN && !(await settingValue('Cloud_Workspace_Client_Id'))) {
    await settings.updateOne({ _id: 'Cloud_Workspace_Id' }, { $set: { value: crypto.randomBytes(12).toString('hex') } });
    await settings.updateOne({ _id: 'Cloud_Workspace_Client_Id' }, { $set: { value: crypto.randomBytes(12).toString('hex') } });
    console.log('Rocket.Chat (stand-in): registered the workspace with the stand-in Rocket.Chat Cloud (REG_TOKEN)');
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

  // --- From 5.0 on: Cloud registration, the Marketplace, the apps API, video conference
  // providers. Each returns [HTTP status, body], or null when the route is not one of these.
  const apps = db.collection('rocketchat_apps');
  const failure = (code, error) => [code, { success: false, error }];
  const notAllowed = () => failure(403, 'User does not have the permissions required for this action [error-unauthorized]');
  const registered = async () => Boolean(await settingValue('Cloud_Workspace_Client_Id'));
  const inMarketplace = (id, version) => MARKETPLACE.find((a) => a.info.id === id && a.info.version === version);
  const appView = (doc) => Object.assign({}, doc.info, { status: doc.status, marketplace: doc.marketplace, installedAt: doc.createdAt });
  const canEnableApp = async (doc) => {
    const others = await apps.countDocuments({ _id: { $ne: doc._id }, marketplace: true, status: { $in: ENABLED } });
    if (others >= MARKETPLACE_APP_LIMIT) {
      throw new Error(`App limit reached: this workspace may enable at most ${MARKETPLACE_APP_LIMIT} Marketplace apps (Community edition)`);
    }
  };
  const parse = (body) => {
    try {
      return JSON.parse(body || '{}');
    } catch (e) {
      return null;
    }
  };
  const appsAndCloud = async (method, path, body, user) => {
    const admin = user.roles.includes('admin');
    if (method === 'GET' && path === '/api/v1/cloud.registrationStatus') {
      if (!admin) return notAllowed();
      return [200, {
        registrationStatus: {
          workspaceRegistered: await registered(),
          workspaceId: (await settingValue('Cloud_Workspace_Id')) || '',
          uniqueId: (await settingValue('uniqueID')) || '',
          token: '',
          email: '',
        },
        success: true,
      }];
    }
    if (method === 'GET' && path === '/api/v1/video-conference.providers') {
      const enabled = await apps.find({ status: { $in: ENABLED } }).toArray();
      const data = enabled
        .map((doc) => inMarketplace(doc.id, doc.info.version))
        .filter((entry) => entry && entry.provider)
        .map((entry) => ({ key: entry.provider.toLowerCase(), label: entry.provider }));
      return [200, { data, success: true }];
    }
    if (!path.startsWith('/api/apps')) return null;
    if (!admin) return notAllowed();
    if (method === 'POST' && path === '/api/apps') {
      const args = parse(body);
      if (!args) return failure(400, 'Invalid JSON');
      if (args.marketplace !== true) return failure(400, 'The stand-in installs Marketplace apps only ({appId, marketplace: true, version}); private app uploads are not reproduced');
      if (!(await registered())) {
        return failure(400, 'Could not download the app from the Marketplace: the workspace is not registered with Rocket.Chat Cloud (no workspace token)');
      }
      const entry = inMarketplace(args.appId, args.version);
      if (!entry) return failure(400, `The Marketplace has no app ${args.appId} at version ${args.version}`);
      if (await apps.findOne({ _id: args.appId })) return failure(400, `App already exists: ${args.appId}`);
      const now = new Date();
      const doc = {
        _id: entry.info.id,
        id: entry.info.id,
        info: entry.info,
        status: 'initialized',
        marketplace: true,
        installationSource: 'marketplace',
        settings: {},
        createdAt: now,
        updatedAt: now,
      };
      for (const [id, type, packageValue, required, isPublic] of entry.settings) {
        doc.settings[id] = { id, type, packageValue, required, public: isPublic, i18nLabel: id, i18nDescription: `${id}_description`, createdAt: now };
      }
      await apps.insertOne(doc);
      try {
        await canEnableApp(doc);
        doc.status = 'manually_enabled';
        await apps.updateOne({ _id: doc._id }, { $set: { status: doc.status } });
      } catch (e) {
        console.warn(`Rocket.Chat (stand-in): the app ${doc.info.name} was installed but not enabled: ${e.message}`);
      }
      return [200, { app: appView(doc), implemented: {}, licenseValidation: { errors: {}, warnings: {} }, success: true }];
    }
    if (method === 'GET' && path === '/api/apps/installed') {
      const all = await apps.find({}).toArray();
      return [200, { apps: all.map(appView), success: true }];
    }
    const m = path.match(/^\/api\/apps\/([A-Za-z0-9-]+)(\/settings|\/status)?$/);
    if (!m) return failure(404, 'Not found');
    const doc = await apps.findOne({ _id: m[1] });
    if (!doc) return failure(404, `No App found by the id of: ${m[1]}`);
    if (method === 'GET' && !m[2]) return [200, { app: appView(doc), success: true }];
    if (m[2] === '/settings' && method === 'GET') return [200, { settings: doc.settings, success: true }];
    if (m[2] === '/settings' && method === 'POST') {
      const args = parse(body);
      if (!args || !Array.isArray(args.settings)) return failure(400, 'The settings to update must be present.');
      // Apps-Engine's updateAppSetting: the posted object replaces the stored one.
      const updated = [];
      for (const s of args.settings) {
        if (s && doc.settings[s.id] && doc.settings[s.id].value !== s.value) {
          doc.settings[s.id] = Object.assign({}, s, { updatedAt: new Date() });
          updated.push(s);
        }
      }
      await apps.updateOne({ _id: doc._id }, { $set: { settings: doc.settings, updatedAt: new Date() } });
      return [200, { updated, success: true }];
    }
    if (m[2] === '/status' && method === 'GET') return [200, { status: doc.status, success: true }];
    if (m[2] === '/status' && method === 'POST') {
      const args = parse(body);
      const status = args && args.status;
      if (status !== 'manually_enabled' && status !== 'manually_disabled') return failure(400, 'Invalid status provided');
      if (status === 'manually_enabled') {
        try {
          await canEnableApp(doc);
        } catch (e) {
          return failure(400, e.message);
        }
      }
      await apps.updateOne({ _id: doc._id }, { $set: { status, updatedAt: new Date() } });
      return [200, { status, success: true }];
    }
    return failure(404, 'Not found');
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
    const appsPath = APPS && (path === '/api/apps' || path.startsWith('/api/apps/'));
    if (!path.startsWith('/api/v1/') && !appsPath) return send(res, 404, { success: false, error: 'Not found' });
    const user = await authed(req);
    if (!user) return send(res, 401, { status: 'error', message: 'You must be logged in to do this.' });
    if (APPS) {
      const answer = await appsAndCloud(req.method, path, body, user);
      if (answer) return send(res, answer[0], answer[1]);
    }
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
