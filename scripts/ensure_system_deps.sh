#!/usr/bin/env bash
# Debian packages the test suite drives: chromium (browser tests, no Playwright download),
# docker-compose (offline validation of docker/compose.yml), dcm2niix (a third DICOM reader
# to cross-check ours), and for the DICOM node (issue 14): orthanc with its DICOMweb plugin (the
# real PACS the node is tested against, run as a plain process), dcmtk (echoscu/storescu from
# outside) and dicom3tools (dciodvfy, the IOD validator the structured reports must pass).
# Installs what is missing when it can (root or sudo).
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v dcm2niix >/dev/null || need+=(dcm2niix)
{ command -v Orthanc || [ -x /usr/sbin/Orthanc ]; } >/dev/null || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v storescu >/dev/null || need+=(dcmtk)
command -v dciodvfy >/dev/null || need+=(dicom3tools)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
