#!/bin/bash
# The real stack on one machine, for the real-stack tests and for a look at the real thing:
#   dom0        OpenSSH sshd on 127.0.0.2, LVM volume group on a loop-file PV (no device-mapper needed),
#               libvirtd running the image host as a qemu (TCG) guest
#   image host  that guest: Debian's kernel, an initramfs with OpenSSH sshd, sftp-server and GNU tools,
#               reached through a qemu port forward on 127.0.0.3
# Usage: reallab.sh up|down|status [DIR]   (DIR default /tmp/isoadmin-reallab; needs root)
# `up` is idempotent and writes DIR/site.toml (an isoadmin site for this stack) and DIR/facts.env.
# The guest kernel and initramfs are cached in $REALLAB_CACHE (default: build/reallab in the project).
set -euo pipefail
cmd=${1:-up}
DIR=$(realpath -m "${2:-/tmp/isoadmin-reallab}")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$(realpath -m "${REALLAB_CACHE:-$HERE/../../build/reallab}")
DOM0_ADDR=127.0.0.2 DOM0_PORT=${REALLAB_DOM0_PORT:-2222}
GUEST_ADDR=127.0.0.3 GUEST_PORT=${REALLAB_GUEST_PORT:-2223}
# the guest reaches a web server on this machine's 127.0.0.1:WEB_PORT as http://WEB_GUEST_ADDR/ (qemu guestfwd:
# one `busybox nc` per connection; restrict=on still keeps every other address out of reach)
WEB_GUEST_ADDR=10.0.2.100 WEB_PORT=${REALLAB_WEB_PORT:-2280}
VG=${REALLAB_VG:-isolabvg} DOMAIN=${REALLAB_DOMAIN:-isolab-imagehost}
PV_FILE=$DIR/lvm/pv0.img
export LVM_SYSTEM_DIR=$DIR/lvm/etc LVM_SUPPRESS_FD_WARNINGS=1 LIBVIRT_DEFAULT_URI=qemu:///system

log() { printf 'reallab: %s\n' "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
# alive and not a zombie (PID 1 here may reap late, so kill -0 is not enough)
alive() { [ -n "${1:-}" ] && [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
pidof_file() { [ -s "$1" ] && tr -dc 0-9 <"$1"; }
wait_until() { local t=$1; shift; local end=$((SECONDS + t)); until "$@" >/dev/null 2>&1; do
  [ $SECONDS -lt "$end" ] || return 1; sleep 0.2; done; }
ssh_opts() { echo -F /dev/null -i "$DIR/ssh/client" -o IdentitiesOnly=yes -o BatchMode=yes \
  -o UserKnownHostsFile="$DIR/ssh/known_hosts" -o StrictHostKeyChecking=yes -o ConnectTimeout=2 -o LogLevel=ERROR; }
ssh_guest() { ssh $(ssh_opts) -p "$GUEST_PORT" root@"$GUEST_ADDR" "$@"; }
ssh_dom0() { ssh $(ssh_opts) -p "$DOM0_PORT" root@"$DOM0_ADDR" "$@"; }

up_sshd() {
  mkdir -p "$DIR/ssh" /run/sshd; chmod 700 "$DIR/ssh"
  [ -f "$DIR/ssh/client" ] || ssh-keygen -q -t ed25519 -N '' -C isoadmin-reallab -f "$DIR/ssh/client"
  [ -f "$DIR/ssh/dom0_host_key" ] || ssh-keygen -q -t ed25519 -N '' -C reallab-dom0 -f "$DIR/ssh/dom0_host_key"
  install -m 600 "$DIR/ssh/client.pub" "$DIR/ssh/authorized_keys"
  cat >"$DIR/ssh/sshd_config" <<CONF
ListenAddress $DOM0_ADDR:$DOM0_PORT
HostKey $DIR/ssh/dom0_host_key
PidFile $DIR/ssh/sshd.pid
AuthorizedKeysFile $DIR/ssh/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
SetEnv LVM_SYSTEM_DIR=$LVM_SYSTEM_DIR LVM_SUPPRESS_FD_WARNINGS=1
CONF
  /usr/sbin/sshd -t -f "$DIR/ssh/sshd_config"
  if alive "$(pidof_file "$DIR/ssh/sshd.pid")"; then kill -HUP "$(pidof_file "$DIR/ssh/sshd.pid")"
  else /usr/sbin/sshd -f "$DIR/ssh/sshd_config" -E "$DIR/ssh/sshd.log"; fi
  echo "[$DOM0_ADDR]:$DOM0_PORT $(cut -d' ' -f1,2 "$DIR/ssh/dom0_host_key.pub")" >"$DIR/ssh/known_hosts.dom0"
}

up_lvm() {
  mkdir -p "$LVM_SYSTEM_DIR"
  cat >"$LVM_SYSTEM_DIR/lvm.conf" <<'CONF'
global { activation = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 global_filter = [ "a|^/dev/loop[0-9]+$|", "r|.*|" ] }
CONF
  [ -f "$PV_FILE" ] || truncate -s 1G "$PV_FILE"
  local loop; loop=$(losetup -j "$PV_FILE" | cut -d: -f1 | head -1)
  [ -n "$loop" ] || loop=$(losetup -f --show "$PV_FILE")
  echo "$loop" >"$DIR/lvm/pv.loop"
  vgs "$VG" >/dev/null 2>&1 || { pvcreate -q "$loop" 2>/dev/null; vgcreate -q --alloc contiguous "$VG" "$loop" 2>/dev/null; }
  vgs "$VG" >/dev/null 2>&1 || die "could not create VG $VG on $loop"
}

up_libvirtd() {
  mkdir -p "$DIR/libvirt" /etc/libvirt
  getent passwd libvirt-qemu >/dev/null || { useradd -r -U -M -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu; touch "$DIR/libvirt/made-user"; }
  if [ -e /etc/libvirt/qemu.conf ] && [ ! -e "$DIR/libvirt/qemu.conf.orig" ] && ! grep -q isoadmin-reallab /etc/libvirt/qemu.conf; then
    cp -p /etc/libvirt/qemu.conf "$DIR/libvirt/qemu.conf.orig"; fi
  printf '# isoadmin-reallab\nuser = "root"\ngroup = "root"\nsecurity_driver = "none"\ndynamic_ownership = 0\nremember_owner = 0\nstdio_handler = "file"\n# the guest reaches the test web server through a guestfwd that runs `busybox nc` per connection\nseccomp_sandbox = 0\n' >/etc/libvirt/qemu.conf
  echo "log_outputs = \"3:file:$DIR/libvirt/libvirtd.log\"" >"$DIR/libvirt/libvirtd.conf"
  alive "$(pidof_file "$DIR/libvirt/libvirtd.pid")" || (cd / && /usr/sbin/libvirtd -d -f "$DIR/libvirt/libvirtd.conf" -p "$DIR/libvirt/libvirtd.pid")
  wait_until 60 virsh -q version || { tail -20 "$DIR/libvirt/libvirtd.log" >&2; die "libvirtd does not answer"; }
}

build_guest() {  # -> $CACHE/<hash>/{vmlinuz,initrd.gz,host_key.pub}
  mkdir -p "$CACHE"
  kernel_pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
  local kpkg; kpkg=$(kernel_pkg)
  [ -n "$kpkg" ] || { apt-get update -qq >/dev/null; kpkg=$(kernel_pkg); }
  [ -n "$kpkg" ] || die "cannot resolve linux-image-cloud-amd64 in the package lists"
  local deb; deb=$(ls "$CACHE/${kpkg}"_*.deb 2>/dev/null | head -1 || true)
  [ -n "$deb" ] || { (cd "$CACHE" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >/dev/null); deb=$(ls "$CACHE/${kpkg}"_*.deb | head -1); }
  local tools="/usr/bin/find /bin/dd /usr/bin/sha256sum /usr/bin/stat /usr/bin/tee /usr/bin/head /bin/cat /bin/sync
    /bin/readlink /usr/bin/setsid /usr/bin/base64 /bin/date /bin/sleep /usr/bin/truncate /usr/bin/pkill /bin/dash
    /usr/bin/curl"
  local key; key=$(cat "$HERE/reallab.sh" "$deb" $tools /usr/sbin/sshd "$DIR/ssh/client.pub" /bin/busybox | sha256sum | cut -c1-16)
  GUEST=$CACHE/guest-$key
  if [ -f "$GUEST/.done" ]; then log "guest image cached ($GUEST)"; return; fi
  log "building guest image from $(basename "$deb")"
  rm -rf "$GUEST"; mkdir -p "$GUEST"
  local kx=$GUEST/kernel; dpkg-deb -x "$deb" "$kx"
  local kver; kver=$(ls "$kx/lib/modules")
  cp "$kx/boot/vmlinuz-$kver" "$GUEST/vmlinuz"
  modpath() { find "$kx/lib/modules/$kver/kernel" \( -name "$1.ko" -o -name "${1//_/-}.ko" \) | head -1; }
  MODS=""
  add_mod() { local f d; case " $MODS " in *" $1 "*) return;; esac
    f=$(modpath "$1"); [ -n "$f" ] || die "module $1.ko not found"
    for d in $(objcopy -O binary --only-section=.modinfo "$f" /dev/stdout | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do add_mod "$d"; done
    MODS="$MODS $1"; }
  for m in virtio_pci virtio_net virtio_blk virtio_rng; do add_mod "$m"; done
  local r=$GUEST/root
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/lib/openssh,etc/ssh,root/.ssh,proc,sys,dev,run/sshd,tmp,var/log,lib/modules}
  cp /bin/busybox "$r/bin/busybox"
  /bin/busybox --list-full | while read -r p; do [ -e "$r/$p" ] || ln -s /bin/busybox "$r/$p"; done
  # the GNU tools replace BusyBox's applets at their usual paths, as on a Debian image host
  for bin in /usr/sbin/sshd /usr/lib/openssh/sftp-server $tools; do
    rm -f "$r$bin"; cp "$bin" "$r$bin"
    for lib in $(ldd "$bin" | grep -oE '/[^ ]+\.so[^ ]*'); do mkdir -p "$r$(dirname "$lib")"; cp -L "$lib" "$r$lib"; done
  done
  # /bin/sh is dash as on Debian (BusyBox's ash would run its own applets before the GNU tools)
  rm -f "$r/bin/sh"; cp /bin/dash "$r/bin/sh"
  for m in $MODS; do cp "$(modpath "$m")" "$r/lib/modules/$m.ko"; done
  rm -rf "$kx"
  printf 'root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  chmod 700 "$r/root" "$r/root/.ssh"
  install -m 600 "$DIR/ssh/client.pub" "$r/root/.ssh/authorized_keys"
  ssh-keygen -q -t ed25519 -N '' -C reallab-imagehost -f "$GUEST/host_key"
  install -m 600 "$GUEST/host_key" "$r/etc/ssh/ssh_host_ed25519_key"
  cat >"$r/etc/ssh/sshd_config" <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintLastLog no
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
  cat >"$r/init" <<INIT
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp/cds; mount -t devpts devpts /dev/pts; ln -s /proc/self/fd /dev/fd
for m in$MODS; do insmod /lib/modules/\$m.ko || echo "reallab: insmod \$m failed"; done
ip link set lo up
n=0; while [ ! -e /sys/class/net/eth0 ] && [ \$n -lt 50 ]; do sleep 0.1; n=\$((n+1)); done
ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; ip route add default via 10.0.2.2
/usr/sbin/sshd -D -e &
echo "reallab: sshd started"
while :; do sleep 3600; done
INIT
  chmod 755 "$r/init"
  find "$r" -exec touch -h -d @0 {} +
  (cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible | gzip -n -1) >"$GUEST/initrd.gz"
  rm -rf "$r"; touch "$GUEST/.done"
  log "guest image built: initramfs $(stat -c %s "$GUEST/initrd.gz") bytes"
}

up_guest() {
  build_guest
  echo "[$GUEST_ADDR]:$GUEST_PORT $(cut -d' ' -f1,2 "$GUEST/host_key.pub")" >"$DIR/ssh/known_hosts.guest"
  cat "$DIR/ssh/known_hosts.dom0" "$DIR/ssh/known_hosts.guest" >"$DIR/ssh/known_hosts"
  cat >"$DIR/domain.xml" <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$DOMAIN</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$GUEST/vmlinuz</kernel>
    <initrd>$GUEST/initrd.gz</initrd><cmdline>console=ttyS0 quiet panic=-1</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='$DIR/console.log'/><target port='0'/></serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=labnet,restrict=on,hostfwd=tcp:$GUEST_ADDR:$GUEST_PORT-:22,guestfwd=tcp:$WEB_GUEST_ADDR:80-cmd:/bin/busybox nc 127.0.0.1 $WEB_PORT'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=labnet,bus=pci.0,addr=0x1f'/>
  </qemu:commandline>
</domain>
XML
  local sum; sum=$(cat "$DIR/domain.xml" | sha256sum | cut -c1-16)
  if [ "$(virsh domstate "$DOMAIN" 2>/dev/null)" = running ] && [ "$(cat "$DIR/booted.sum" 2>/dev/null)" = "$sum" ] \
     && ssh_guest true 2>/dev/null; then log "guest already running"; return; fi
  virsh destroy "$DOMAIN" >/dev/null 2>&1 || true
  rm -f "$DIR/console.log"
  virsh create "$DIR/domain.xml" >/dev/null
  echo "$sum" >"$DIR/booted.sum"
  wait_until 120 ssh_guest true || { cat "$DIR/console.log" >&2; die "no SSH to the guest"; }
}

write_site() {
  cat >"$DIR/site.toml" <<TOML
# isoadmin site for the real lab (written by tests/reallab/reallab.sh up)
[console]
state_dir = "$DIR/state"
settle_seconds = 1

[image_hosts.imagehost]
address = "$GUEST_ADDR"
port = $GUEST_PORT
user = "root"
key = "$DIR/ssh/client"
known_hosts = "$DIR/ssh/known_hosts"
uploads_root = "/tmp/cds"
domains = { dom0 = "$DOMAIN" }
download_hosts = ["$WEB_GUEST_ADDR"]

[dom0s.dom0]
address = "$DOM0_ADDR"
port = $DOM0_PORT
user = "root"
key = "$DIR/ssh/client"
known_hosts = "$DIR/ssh/known_hosts"

[dom0s.dom0.storage]
driver = "lvm"
vg = "$VG"
emulate_activation = true   # this machine has no device-mapper
pv_file = "$PV_FILE"

[dom0s.dom0.hypervisor]
driver = "libvirt"
uri = "qemu:///system"
TOML
  cat >"$DIR/facts.env" <<ENV
DIR=$DIR
VG=$VG
PV_FILE=$PV_FILE
PV_LOOP=$(cat "$DIR/lvm/pv.loop")
DOMAIN=$DOMAIN
GUEST_IMAGE=$GUEST
GUEST_ADDR=$GUEST_ADDR
GUEST_PORT=$GUEST_PORT
DOM0_ADDR=$DOM0_ADDR
DOM0_PORT=$DOM0_PORT
WEB_GUEST_ADDR=$WEB_GUEST_ADDR
WEB_PORT=$WEB_PORT
LVM_SYSTEM_DIR=$LVM_SYSTEM_DIR
ENV
}

down() {
  virsh destroy "$DOMAIN" >/dev/null 2>&1 || true
  if [ -d "$LVM_SYSTEM_DIR" ]; then
    for link in /dev/"$VG"/*; do [ -L "$link" ] && { losetup -d "$(readlink "$link")" 2>/dev/null || true; rm -f "$link"; }; done
    rmdir /dev/"$VG" 2>/dev/null || true
    vgremove -q -f "$VG" >/dev/null 2>&1 || true
  fi
  [ -f "$PV_FILE" ] && for l in $(losetup -j "$PV_FILE" | cut -d: -f1); do losetup -d "$l" || true; done
  local p
  p=$(pidof_file "$DIR/libvirt/libvirtd.pid" || true); alive "$p" && kill "$p" && wait_until 15 bash -c "! [ -e /proc/$p ] || grep -q Z /proc/$p/status"
  p=$(pidof_file "$DIR/ssh/sshd.pid" || true); alive "$p" && kill "$p"
  [ -f "$DIR/libvirt/qemu.conf.orig" ] && cp -p "$DIR/libvirt/qemu.conf.orig" /etc/libvirt/qemu.conf
  [ -f "$DIR/libvirt/made-user" ] && userdel libvirt-qemu 2>/dev/null || true
  rm -rf "$DIR"
  log "down"
}

case $cmd in
  up)
    [ "$(id -u)" = 0 ] || die "needs root"
    t=$SECONDS; mkdir -p "$DIR/lvm" "$DIR/state"
    up_sshd; up_lvm; up_libvirtd; up_guest; write_site
    wait_until 10 ssh_dom0 true || die "no SSH to dom0"
    log "up in $((SECONDS - t)) s: dom0 $DOM0_ADDR:$DOM0_PORT, guest $GUEST_ADDR:$GUEST_PORT, VG $VG, site $DIR/site.toml";;
  down) down;;
  status) virsh domstate "$DOMAIN" 2>/dev/null || echo "no guest"; vgs "$VG" 2>/dev/null || echo "no VG";;
  *) echo "usage: $0 up|down|status [DIR]" >&2; exit 2;;
esac
