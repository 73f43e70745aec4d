// config.js template of the STAND-IN jitsi-meet-web-config (tests/standins/README.md), with the
// placeholder of the real one (jitsi-meet.example.com).
var config = {
    hosts: {
        domain: 'jitsi-meet.example.com',
        muc: 'conference.jitsi-meet.example.com'
    },
    bosh: 'https://jitsi-meet.example.com/http-bind',
    websocket: 'wss://jitsi-meet.example.com/xmpp-websocket',
    p2p: { enabled: true }
};
