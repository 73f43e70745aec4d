-- Written by appliance-firstboot from /etc/appliance/templates/prosody-host.cfg.lua.handlebars.
-- Change /etc/appliance/config.yaml and run `appliance-firstboot reconfigure`, not this file.

VirtualHost "meet.example.com"
    ssl = {
        key = "/etc/prosody/certs/meet.example.com.key";
        certificate = "/etc/prosody/certs/meet.example.com.crt";
    }
