#!/usr/bin/env bash
# Clones the six upstream repositories build.sh takes into DIR, one bare clone per
# repository named owner+repo. A clone already there is fetched again, not replaced.
#
#   fetch-sources.sh DIR
set -euo pipefail
D=${1:?usage: fetch-sources.sh DIR}
mkdir -p "$D"
for r in pantavisor/pantavisor pantavisor/meta-pantavisor pantavisor/libthttp \
         libevent/libevent h2o/picohttpparser lxc/lxc; do
  dest="$D/${r/\//+}"
  if [ -d "$dest" ]; then
    git --git-dir="$dest" fetch -q origin '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*'
  else
    git clone -q --bare "https://github.com/$r" "$dest"
  fi
  echo "$dest"
done
