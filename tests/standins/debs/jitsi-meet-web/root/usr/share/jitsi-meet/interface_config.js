// interface_config.js of the STAND-IN jitsi-meet-web (tests/standins/README.md).
var interfaceConfig = { APP_NAME: 'Jitsi Meet', SHOW_JITSI_WATERMARK: true };
