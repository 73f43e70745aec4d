// Start-up checks of Rocket.Chat's bundle that the appliance relies on: the Node.js major
// version must satisfy the bundle's .node_version.txt (Rocket.Chat refuses another major).
'use strict';
const fs = require('fs');
const path = require('path');

const wanted = fs.readFileSync(path.join(__dirname, '..', '..', '.node_version.txt'), 'utf8').trim();
const major = (v) => v.replace(/^v/, '').split('.')[0];
if (major(wanted) !== major(process.version)) {
  console.error(`Rocket.Chat (stand-in): this bundle needs Node.js ${major(wanted)}.x (${wanted}), not ${process.version}`);
  process.exit(1);
}
require('./server.js');
