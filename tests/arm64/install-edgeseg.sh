# Sourced by build-env.sh: install this source tree into the root exactly as docs/jetson.md tells a
# Jetson user (a --system-site-packages venv, the system's numpy kept as a constraint, the CPU engines'
# extras), plus a second venv with the oldest engines a device may resolve (the version matrix).
SOURCE_PARTS="$(python3 "$REPO/tests/source_layout.py" --parts)"  # the folders setup.cfg maps, and its files
OLDEST_ENGINES="onnxruntime==1.23.2 ai-edge-litert==1.4.0"  # JetPack 6's resolution; LiteRT's last 1.x

copy_source() {
  rm -rf "$ROOT/opt/edgeseg-src"; mkdir -p "$ROOT/opt/edgeseg-src"
  (cd "$REPO" && tar --exclude=__pycache__ --exclude='*.egg-info' -cf - $SOURCE_PARTS) | tar -xf - -C "$ROOT/opt/edgeseg-src"
  mkdir -p "$ROOT/opt/edgeseg-checks"; cp "$HERE/device_checks.py" "$ROOT/opt/edgeseg-checks/"
}

# The docs' three lines (docs/jetson.md, "Install on the Jetson"), with the venv at /root/edgeseg.
docs_install() {
  in_root sh -euc '
    [ -x /root/edgeseg/bin/python ] || python3 -m venv --system-site-packages /root/edgeseg
    /root/edgeseg/bin/python -c "import numpy; print(\"numpy<%d\" % (int(numpy.__version__.split(\".\")[0]) + 1))" > /root/edgeseg/keep-numpy.txt
    /root/edgeseg/bin/pip install --quiet --progress-bar off -c /root/edgeseg/keep-numpy.txt "/opt/edgeseg-src[onnxruntime,litert]"'
}

oldest_engines() {
  in_root sh -euc "
    [ -x /root/edgeseg-oldest/bin/python ] || python3 -m venv --system-site-packages /root/edgeseg-oldest
    /root/edgeseg-oldest/bin/python -c 'import numpy; print(\"numpy<%d\" % (int(numpy.__version__.split(\".\")[0]) + 1))' > /root/edgeseg-oldest/keep-numpy.txt
    /root/edgeseg-oldest/bin/pip install --quiet --progress-bar off -c /root/edgeseg-oldest/keep-numpy.txt \
      '/opt/edgeseg-src' $OLDEST_ENGINES"
}

echo "== edgeseg install (docs/jetson.md)"; t0=$SECONDS
copy_source
docs_install
echo "== edgeseg install: $((SECONDS - t0)) s"
echo "== oldest engines ($OLDEST_ENGINES)"; t0=$SECONDS
oldest_engines
echo "== oldest engines: $((SECONDS - t0)) s"
in_root /root/edgeseg/bin/pip list --format=freeze 2>/dev/null | grep -i -E '^(edgeseg|numpy|ml.dtypes|onnxruntime|ai-edge-litert|opencv)' || true
