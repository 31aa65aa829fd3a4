#!/usr/bin/env bash
# Set up Hexchange on a Debian/Ubuntu machine: Debian packages, a virtual environment, the
# project. Safe to run again: it only installs what is missing.
#   scripts/setup.sh          runtime (dcmtk for the demo's DICOM sender)
#   scripts/setup.sh --test   also what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

say() { printf '==> %s\n' "$*"; }

packages=(dcmtk tesseract-ocr)
if [ "$want_test" = 1 ]; then
  packages+=(dicom3tools postgresql-client orthanc orthanc-dicomweb tesseract-ocr tesseract-ocr-eng fonts-dejavu-core
             fonts-liberation fonts-freefont-ttf fonts-urw-base35 chromium)
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  if printf '%s\n' "${missing[@]}" | grep -qx orthanc && [ -d /run/systemd/system ]; then
    say "orthanc is for the tests only (they start their own): disabling its system service"
    $sudo systemctl disable --now orthanc >/dev/null 2>&1 || true
  fi
else
  say "Debian packages present: ${packages[*]}"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating virtual environment .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.hexchange-installed
extras=""
[ "$want_test" = 1 ] && extras="[test]"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! grep -qx "hexchange$extras" "$stamp"; then
  say "installing hexchange$extras into .venv (pip)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".$extras"
  echo "hexchange$extras" > "$stamp"
else
  say "hexchange$extras already installed in .venv"
fi

# The learned text detector's model (PP-OCRv4 DB, ONNX, 4.7 MB) from the pinned PyPI wheel
# rapidocr-onnxruntime, sha256-checked, into ~/.cache/hexchange/models (never the repository).
# Without it the pixel scrubber falls back to the classical detector and says so per instance.
say "text detection model (tools/fetch_text_model.py: pinned wheel from PyPI, only the .onnx kept)"
if ! model=$(.venv/bin/python tools/fetch_text_model.py); then
  say "could not fetch the text detection model: the pixel scrubber will use the classical detector only"
  [ "$want_test" = 1 ] && exit 1
else
  say "text detection model: $model"
fi
