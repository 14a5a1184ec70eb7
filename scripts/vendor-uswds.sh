#!/usr/bin/env bash
# Refresh idp/static/uswds/ from the npm registry: the compiled CSS and JavaScript of the
# U.S. Web Design System, the web fonts its CSS references, and only the images and
# icons our pages use (not the SASS sources, not the 300 icons).
#
#   make vendor-uswds                      # the pinned version below
#   USWDS_VERSION=3.14.0 scripts/vendor-uswds.sh
#
# The result is committed: `make run` needs no Node. Needs npm (for `npm pack`) and tar.
# Connexion (clients/connexion) serves the same folder through a static route.
set -euo pipefail

VERSION=${USWDS_VERSION:-3.14.0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=$ROOT/idp/static/uswds

# Images and icons the templates and the components we use need (alerts, modal,
# banner, select, checkbox). Add a file here when a page starts using another one.
IMAGES=(
  img/usa-icons/info.svg
  img/usa-icons/error.svg
  img/usa-icons/warning.svg
  img/usa-icons/check_circle.svg
  img/usa-icons/close.svg
  img/usa-icons/expand_more.svg
  img/usa-icons/expand_less.svg
  img/usa-icons/unfold_more.svg
  img/correct8.svg
  img/correct8-alt.svg
  img/checkbox-indeterminate.svg
  img/us_flag_small.png
  img/icon-dot-gov.svg
  img/icon-https.svg
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "vendor-uswds: fetching @uswds/uswds@$VERSION from the npm registry" >&2
(cd "$work" && npm pack --silent "@uswds/uswds@$VERSION" >/dev/null)
tar -xzf "$work"/uswds-uswds-"$VERSION".tgz -C "$work"
pkg=$work/package
got=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$pkg/package.json")
if [[ $got != "$VERSION" ]]; then
  echo "vendor-uswds: the package says version $got, not $VERSION" >&2
  exit 1
fi

rm -rf "$DEST"
mkdir -p "$DEST/css" "$DEST/js" "$DEST/fonts" "$DEST/img"
cp "$pkg/dist/css/uswds.min.css" "$DEST/css/"
cp "$pkg/dist/js/uswds.min.js" "$DEST/js/"
cp "$pkg/LICENSE.md" "$DEST/LICENSE.md"

# Every font file the compiled CSS loads (woff2 only), and nothing else.
grep -o 'url(\.\./fonts/[^)]*)' "$DEST/css/uswds.min.css" | sed 's/^url(\.\.\///; s/)$//' | sort -u |
  while read -r font; do
    mkdir -p "$DEST/$(dirname "$font")"
    cp "$pkg/dist/$font" "$DEST/$font"
  done

for image in "${IMAGES[@]}"; do
  mkdir -p "$DEST/$(dirname "$image")"
  cp "$pkg/dist/$image" "$DEST/$image"
done

# The source maps are not shipped: drop the comments that point to them.
sed -i '/^\/\*# sourceMappingURL=.*\*\/$/d; s#/\*\# sourceMappingURL=[^*]*\*/##' "$DEST/css/uswds.min.css"
sed -i 's#//\# sourceMappingURL=.*$##' "$DEST/js/uswds.min.js"

cat > "$DEST/VERSION" <<INFO
@uswds/uswds $VERSION (npm registry), refreshed by scripts/vendor-uswds.sh.
css/uswds.min.css and js/uswds.min.js are the package's dist/ files (source-map
comments removed); fonts/ holds the woff2 files the CSS references; img/ only the
images and icons the pages use. LICENSE.md is the package's licence.
INFO
echo "vendor-uswds: $(du -sh "$DEST" | cut -f1) in ${DEST#"$ROOT"/}" >&2
