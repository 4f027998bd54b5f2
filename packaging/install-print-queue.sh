#!/usr/bin/env bash
# Install (or --remove) the CUPS print queue "kiosk": every job printed to it
# lands, as PDF with its title, user and host, in the kiosk's print folder,
# and the touch UI's Inbox offers it for a patient (docs/drivers.md, "Print
# to PACS"). Run as root; safe to run again.
#
#   sudo packaging/install-print-queue.sh [--user USER] [--folder DIR] [--share]
#   sudo packaging/install-print-queue.sh --remove
#
# --user    the account the kiosk runs as (default: $SUDO_USER); its group
#           reads the print folder
# --folder  the print folder (default /var/spool/kiosk-print); set the same
#           path as [inbox] print_folder in the kiosk's configuration
# --share   share the queue on the network (IPP, port 631) for other PCs
#
# CUPS_SERVERROOT, CUPS_SERVERBIN, CUPS_SERVER and CUPS_RESTART (the command
# that restarts cupsd) point it at another CUPS (the tests' private one).
set -euo pipefail
cd "$(dirname "$0")"

SERVERROOT="${CUPS_SERVERROOT:-/etc/cups}"
SERVERBIN="${CUPS_SERVERBIN:-/usr/lib/cups}"
RESTART="${CUPS_RESTART:-systemctl restart cups}"
QUEUE=kiosk
USER_NAME="${SUDO_USER:-}"
FOLDER=/var/spool/kiosk-print
SHARE=no
REMOVE=no

die() { echo "install-print-queue: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --user) USER_NAME="${2:?--user needs a name}"; shift 2 ;;
    --folder) FOLDER="${2:?--folder needs a path}"; shift 2 ;;
    --share) SHARE=yes; shift ;;
    --remove) REMOVE=yes; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 ...)"
command -v lpadmin >/dev/null || die "lpadmin not found: install cups (packaging/install-deps.sh)"
FILES_CONF="$SERVERROOT/cups-files.conf"
[ -f "$FILES_CONF" ] || die "$FILES_CONF not found: is CUPS installed?"
BACKEND="$SERVERBIN/backend/kiosk"

# The print folder reaches the backend as $KIOSK_INBOX: CUPS gives backends only
# the environment cups-files.conf sets. A changed line needs a restart of cupsd.
set_env_line() {
  local wanted="$1" current
  current="$(grep -E '^SetEnv[[:space:]]+KIOSK_INBOX[[:space:]]' "$FILES_CONF" || true)"
  [ "$current" = "$wanted" ] && return 1
  sed -i -E '/^SetEnv[[:space:]]+KIOSK_INBOX[[:space:]]/d' "$FILES_CONF"
  [ -n "$wanted" ] && echo "$wanted" >> "$FILES_CONF"
  return 0
}

if [ "$REMOVE" = yes ]; then
  if lpstat -p "$QUEUE" >/dev/null 2>&1; then lpadmin -x "$QUEUE"; fi
  rm -f "$BACKEND"
  if set_env_line ""; then $RESTART; fi
  echo "install-print-queue: queue $QUEUE removed; the print folder and its files are kept"
  exit 0
fi

[ -n "$USER_NAME" ] || die "name the kiosk's account with --user USER"
id "$USER_NAME" >/dev/null 2>&1 || die "no user $USER_NAME"
id lp >/dev/null 2>&1 || die "no user lp: CUPS runs backends as lp"
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 not found: the backend needs it"
case "$FOLDER" in /*) ;; *) die "--folder needs an absolute path" ;; esac
GROUP="$(id -gn "$USER_NAME")"

# lp writes the jobs, the kiosk's group reads and moves them (setgid: new files keep the group).
mkdir -p "$FOLDER"
chown "lp:$GROUP" "$FOLDER"
chmod 2770 "$FOLDER"
if ! runuser -u lp -- test -w "$FOLDER" -a -x "$FOLDER"; then
  die "lp cannot write $FOLDER: every parent folder must be traversable by lp (chmod o+x)"
fi
if ! runuser -u "$USER_NAME" -- test -r "$FOLDER" -a -x "$FOLDER"; then
  die "$USER_NAME cannot read $FOLDER: every parent folder must be traversable by $USER_NAME"
fi

# World-executable and root-owned: CUPS runs it as lp (a 0700 backend would run as root).
install -D -o root -g root -m 0755 cups/kiosk-backend "$BACKEND"
if set_env_line "SetEnv KIOSK_INBOX $FOLDER"; then $RESTART; fi

# cupsd may take a moment to listen again after the restart.
for _ in $(seq 50); do lpstat -r 2>/dev/null | grep -qx "scheduler is running" && break; sleep 0.2; done
lpadmin -p "$QUEUE" -E -v kiosk:/ -P cups/kiosk.ppd -D "Kiosk: print to PACS" -L "$(hostname)" \
  -o printer-error-policy=retry-job -o printer-is-shared="$([ "$SHARE" = yes ] && echo true || echo false)"
if [ "$SHARE" = yes ]; then cupsctl --share-printers; fi

echo "install-print-queue: queue $QUEUE -> $FOLDER (written by lp, read by group $GROUP)"
echo "install-print-queue: set [inbox] print_folder = \"$FOLDER\" in the kiosk's configuration"
