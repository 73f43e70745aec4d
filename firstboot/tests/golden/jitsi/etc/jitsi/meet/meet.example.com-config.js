// Written by appliance-firstboot from /etc/appliance/templates/jitsi-meet-config.js.handlebars.
// Change /etc/appliance/config.yaml and run `appliance-firstboot reconfigure`, not this file.
// Jitsi Meet's defaults apply to every option not set here.

var config = {
    hosts: {
        // The XMPP domain.
        domain: "meet.example.com",
        // The conference MUC.
        muc: "conference.meet.example.com"
    },

    // BOSH, proxied by nginx to prosody.
    bosh: "https://meet.example.com/http-bind",

    enableWelcomePage: true,
    prejoinConfig: {
        enabled: true
    },
    p2p: {
        enabled: true
    },
    analytics: {
        disabled: true
    }
};
