#!/bin/sh
# Installs the units, a dedicated user and the config directory. Run as root from this folder.
set -eu
id flumewatch >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin flumewatch
install -d -m 0750 -o root -g flumewatch /etc/flumewatch
for f in ../aggregator.toml ../rules.toml ../sidecar.toml; do
  [ -e "/etc/flumewatch/$(basename "$f")" ] || install -m 0640 -o root -g flumewatch "$f" /etc/flumewatch/
done
[ -e /etc/flumewatch/flumewatch.env ] || install -m 0640 -o root -g flumewatch flumewatch.env /etc/flumewatch/
install -m 0644 flumewatch-aggregator.service flumewatch-sidecar.service /etc/systemd/system/
systemctl daemon-reload
echo "now: systemctl enable --now flumewatch-aggregator   (or flumewatch-sidecar on Flume hosts)"
