#!/bin/sh
# Rocket.Chat from its release tarball, as Rocket.Chat's manual installation does it, pinned:
#   Node.js from the official tarball (SHA-256 pinned) in /opt/node-vX-linux-x64, linked from
#   /usr/local/bin; the Rocket.Chat tarball, its detached signature checked with Rocket.Chat's
#   release key (fingerprint pinned; an optional SHA-256 as well); `npm install --production`
#   in bundle/programs/server; the bundle moved to /opt/Rocket.Chat; the locked system user
#   rocketchat; the Jitsi app package (SHA-256 pinned) for appliance-rocketchat-jitsi.service.
# Compilers needed by npm's native modules are removed again afterwards.
set -eu

need() { /usr/local/lib/appliance/need-var "$1"; }

node_version=$(need NODE_VERSION)
node_url=$(need NODE_URL)
node_sha256=$(need NODE_SHA256)
rc_version=$(need ROCKETCHAT_VERSION)
rc_url=$(need ROCKETCHAT_URL)
rc_sig_url=$(need ROCKETCHAT_SIGNATURE_URL)
rc_key_url=$(need ROCKETCHAT_KEY_URL)
rc_key_fpr=$(need ROCKETCHAT_KEY_FINGERPRINT)
rc_sha256=${APPLIANCE_VAR_ROCKETCHAT_SHA256:-}
app_id=$(need ROCKETCHAT_JITSI_APP_ID)
app_version=$(need ROCKETCHAT_JITSI_APP_VERSION)
app_url=$(need ROCKETCHAT_JITSI_APP_URL)
app_sha256=${APPLIANCE_VAR_ROCKETCHAT_JITSI_APP_SHA256:-}
if [ -z "$app_sha256" ]; then
	echo "rocketchat: rocketchat_jitsi_app_sha256 is empty. Pin the SHA-256 of $app_url" >&2
	echo "rocketchat: in the profile or with --var rocketchat_jitsi_app_sha256=HEX (sha256sum of the file)." >&2
	exit 1
fi

lib=/usr/local/lib/appliance
work=/tmp/appliance-rocketchat
rm -rf "$work"
mkdir -p "$work"

# Runtime needs (fontconfig, as in the official Docker image; jq and curl for
# appliance-rocketchat-jitsi), then the build-only ones, noting which of those
# are new so that exactly these are removed at the end.
apt-get install -q --no-install-recommends ca-certificates curl gnupg gpgv jq xz-utils python3 fontconfig
installed() { dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" { print $2 }' | sort; }
installed >"$work/before"
apt-get install -q --no-install-recommends build-essential
build_only=$(installed | comm -13 "$work/before" -)

# Node.js
node_dir=/opt/node-v$node_version-linux-x64
"$lib/fetch-pinned" --sha256 "$node_sha256" "$node_url" "$work/node.tar.xz"
rm -rf "$node_dir"
mkdir -p "$node_dir"
tar -xJf "$work/node.tar.xz" -C "$node_dir" --strip-components=1 --no-same-owner
for tool in node npm npx; do
	ln -sfn "$node_dir/bin/$tool" "/usr/local/bin/$tool"
done
got=$(/usr/local/bin/node --version)
[ "$got" = "v$node_version" ] || {
	echo "rocketchat: $node_url gave Node.js $got, not v$node_version" >&2
	exit 1
}

# Rocket.Chat
"$lib/apt-key-pinned" keyring "$rc_key_url" "$rc_key_fpr" "$work/rocketchat-release.gpg"
set -- --signature "$rc_sig_url" --keyring "$work/rocketchat-release.gpg"
if [ -n "$rc_sha256" ]; then
	set -- "$@" --sha256 "$rc_sha256"
fi
"$lib/fetch-pinned" "$@" "$rc_url" "$work/rocket.chat.tgz"
tar -xzf "$work/rocket.chat.tgz" -C "$work" --no-same-owner
[ -f "$work/bundle/main.js" ] || {
	echo "rocketchat: $rc_url holds no bundle/main.js" >&2
	exit 1
}
# The bundle names the Node.js it was built for.
if [ -f "$work/bundle/.node_version.txt" ]; then
	wants=$(tr -d ' \n' <"$work/bundle/.node_version.txt")
	[ "$wants" = "v$node_version" ] || {
		echo "rocketchat: Rocket.Chat $rc_version wants Node.js $wants, but node_version is $node_version" >&2
		exit 1
	}
fi
# --unsafe-perm: npm 6 runs as root here and would otherwise run the install scripts of
# native modules as nobody, who cannot write in the tree. nodedir: node-gyp takes Node's
# headers from the tarball instead of downloading them.
# The npm registry is an input like the others: `appliance fetch` keeps npm's cache in the
# bundle (overlays/rocketchat/npm-cache), a build from the bundle installs from it with
# --offline, and --mirror npm=URL is the registry to use.
npm_cache=$work/npm-cache
npm_offline=
if [ -n "${APPLIANCE_FETCH:-}" ]; then
	npm_cache=$APPLIANCE_FETCH/overlays/rocketchat/npm-cache
elif [ -n "${APPLIANCE_BUNDLE:-}" ]; then
	[ -d "$APPLIANCE_BUNDLE/overlays/rocketchat/npm-cache" ] || {
		echo "appliance: missing input: npm packages of Rocket.Chat's server (overlays/rocketchat/npm-cache)" >&2
		exit 1
	}
	cp -R "$APPLIANCE_BUNDLE/overlays/rocketchat/npm-cache" "$npm_cache"
	npm_offline=--offline
fi
npm_registry=https://registry.npmjs.org/
if [ -n "${APPLIANCE_MIRRORS:-}" ]; then
	npm_registry=$(appliance-mirror url "$npm_registry")
fi
(cd "$work/bundle/programs/server" &&
	PATH="/usr/local/bin:$PATH" HOME="$work/home" npm_config_cache="$npm_cache" \
		npm_config_registry="$npm_registry" npm_config_nodedir="$node_dir" \
		npm install --production --unsafe-perm=true --no-audit --no-fund $npm_offline)
rm -rf /opt/Rocket.Chat
mv "$work/bundle" /opt/Rocket.Chat
printf '%s\n' "$rc_version" >/opt/Rocket.Chat/.appliance-version

if ! getent passwd rocketchat >/dev/null; then
	useradd --system --user-group --home-dir /opt/Rocket.Chat --no-create-home \
		--shell /usr/sbin/nologin --comment "Rocket.Chat" rocketchat
fi
usermod --lock rocketchat
chown -R rocketchat:rocketchat /opt/Rocket.Chat

# The Jitsi app, installed into Rocket.Chat by appliance-rocketchat-jitsi.service.
app=/usr/share/appliance/rocketchat/jitsi-app.zip
"$lib/fetch-pinned" --sha256 "$app_sha256" "$app_url" "$app"
chmod 0644 "$app"
python3 - "$app" "$app_id" "$app_version" <<'EOF'
import json, sys, zipfile
path, want, version = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(path) as z:
    info = json.loads(z.read("app.json").decode("utf-8"))
if info.get("id") != want or info.get("version") != version:
    sys.exit("rocketchat: %s is the app %r %r (%s), not %s %s"
             % (path, info.get("id"), info.get("version"), info.get("name"), want, version))
print("rocketchat: %s is the app %s %s" % (path, info.get("name"), info.get("version")))
EOF

systemctl enable rocketchat.service appliance-rocketchat-admin.service appliance-rocketchat-jitsi.service

# Build-only packages and files out again.
if [ -n "$build_only" ]; then
	# shellcheck disable=SC2086 # one word per package
	apt-get purge -q $build_only
fi
rm -rf "$work" /root/.npm /root/.node-gyp /root/.config/configstore
echo "rocketchat: Rocket.Chat $rc_version on Node.js $node_version in /opt/Rocket.Chat"
