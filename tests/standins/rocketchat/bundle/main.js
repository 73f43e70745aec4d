// The STAND-IN Rocket.Chat of the appliance builder's test harness (tests/standins/README.md):
// laid out like Rocket.Chat's release bundle (main.js, programs/server with its package.json).
require('./programs/server/boot.js');
