#!/usr/bin/env bash
# Builds the petseg CPU and GPU images with the local Docker engine and tags them
# petseg-cpu:TAG and petseg-gpu:TAG, for running them here (tests, `petseg run --local --runner
# docker`). Releases go through build.sh instead.
#
# The Dockerfiles are built unchanged, from their pinned base images when the engine has them or
# can pull them. On a machine that reaches only the package registries (PyPI, Debian), the
# missing bases are replaced by stand-ins made from those registries, tagged with the pinned
# names and labelled petseg.stand-in=true:
#   python:3.11.13-slim-bookworm       Debian bookworm (debootstrap) with Debian's python3 3.11
#   ghcr.io/astral-sh/uv:0.13.8        a scratch image holding uv from its PyPI wheel (fetched by
#                                      the host's uv, so no python3 with pip is needed)
#   nvidia/cuda:*-runtime-* / -devel-*  the same Debian image; devel adds empty placeholders at
#                                      the paths Dockerfile.gpu copies (ptxas, libdevice)
# Every stand-in trusts the host's CA bundle (SSL_CERT_FILE), for TLS-inspecting proxies.
# On CUDA stand-ins the GPU build gets PYTHON_SOURCE=system (uv's managed Python comes from
# GitHub, out of reach): it then uses the base's python3. Stand-ins run the code on CPU; CUDA
# itself is not exercised. Builds use the host network; nothing here needs a bridge network.
set -euo pipefail
shopt -s inherit_errexit

usage() {
  cat <<'USAGE'
Usage: containers/build-local.sh [options]

  --only cpu|gpu      build one image (default: both)
  --tag TAG           tag of the built images (default: local)
  --cache-dir DIR     where the Debian root file system is kept between runs
                      (default: $PETSEG_IMAGE_CACHE or ~/.cache/petseg-images)
  --no-pull           do not try to pull missing bases; use stand-ins at once
  -h, --help          show this help

Prints one line per base image (present, pulled or stand-in) and the built image names.
DOCKER_HOST selects the engine, as for the docker command.
USAGE
}

die() {
  echo "build-local.sh: $*" >&2
  exit 2
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ONLY=""
TAG="local"
CACHE="${PETSEG_IMAGE_CACHE:-${HOME:-/root}/.cache/petseg-images}"
PULL=1
DEBIAN_MIRROR="${PETSEG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA_BUNDLE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
STAND_IN_LABEL="petseg.stand-in=true"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --only) ONLY="${2:-}"; shift 2 ;;
    --tag) TAG="${2:-}"; shift 2 ;;
    --cache-dir) CACHE="${2:-}"; shift 2 ;;
    --no-pull) PULL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
case "$ONLY" in
  "") KINDS=(cpu gpu) ;;
  cpu | gpu) KINDS=("$ONLY") ;;
  *) die "--only '$ONLY' must be cpu or gpu" ;;
esac
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag '$TAG' is not a valid tag"
command -v docker >/dev/null || die "docker is not installed (Debian: apt-get install docker.io)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}; start dockerd first"
mkdir -p "$CACHE"
# One build at a time per cache (a CI script may start one ahead of the tests, which run it too).
exec 9>"$CACHE/.lock"
flock 9

# The legacy builder resolves FROM against local images first, so stand-ins are found as such.
export DOCKER_BUILDKIT=0

arg_default() { # the default of ARG $2 in Dockerfile $1
  sed -n "s/^ARG $2=\(.*\)$/\1/p" "$1" | head -n 1
}

have_image() {
  docker image inspect "$1" >/dev/null 2>&1
}

is_stand_in() {
  [[ "$(docker image inspect --format '{{index .Config.Labels "petseg.stand-in"}}' "$1" 2>/dev/null)" == true ]]
}

debian_rootfs_tar() { # prints the path of a cached bookworm root file system with python3
  local tar="$CACHE/debian-bookworm-python3.tar" rootfs
  if [[ ! -s "$tar" ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    [[ "$(id -u)" == 0 ]] || die "debootstrap needs root to make the stand-in base"
    [[ -r "$HOST_CA_BUNDLE" ]] || die "no CA bundle at $HOST_CA_BUNDLE (set SSL_CERT_FILE)"
    rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    echo "  debootstrap bookworm from $DEBIAN_MIRROR (a few minutes, once)" >&2
    debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" \
      "$DEBIAN_MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { rm -rf "$rootfs"; die "debootstrap failed; see $CACHE/debootstrap.log"; }
    # The host's bundle: public roots plus any TLS-inspecting proxy's root.
    cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    tar --numeric-owner -C "$rootfs" -cf "$tar.partial" .
    rm -rf "$rootfs"
    mv "$tar.partial" "$tar"
  fi
  echo "$tar"
}

make_python_stand_in() { # $1: tag
  docker import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
    --change "LABEL $STAND_IN_LABEL" \
    --change 'CMD ["python3"]' \
    "$(debian_rootfs_tar)" "$1" >/dev/null
}

make_uv_stand_in() { # $1: tag like ghcr.io/astral-sh/uv:0.13.8
  local version="${1##*:}" dir platform
  case "$(uname -m)" in
    x86_64) platform=x86_64-manylinux_2_17 ;;
    aarch64) platform=aarch64-manylinux_2_17 ;;
    *) die "no uv stand-in for $(uname -m)" ;;
  esac
  # uv unpacks its own PyPI wheel: whichever python3 comes first on PATH (under `uv run`, the
  # project venv's, which has no pip) is not needed.
  command -v uv >/dev/null || die "uv is not installed (python3 -m pip install uv==$version)"
  dir="$(mktemp -d)"
  uv pip install --quiet --no-deps --only-binary :all: --python-platform "$platform" \
    --target "$dir/wheel" "uv==$version" >&2 \
    || { rm -rf "$dir"; die "cannot fetch the uv $version wheel from the package index"; }
  install -m 755 "$dir/wheel/bin/uv" "$dir/uv"
  tar --numeric-owner --owner=0 --group=0 -C "$dir" -cf - uv \
    | docker import --change "LABEL $STAND_IN_LABEL" - "$1" >/dev/null
  rm -rf "$dir"
}

make_cuda_devel_stand_in() { # $1: tag; placeholders at what Dockerfile.gpu copies from it
  local dockerfile="$ROOT/containers/Dockerfile.gpu" paths=() path setup=""
  mapfile -t paths < <(sed -n 's/^COPY --from=cuda-devel \([^ ]*\) .*$/\1/p' "$dockerfile")
  for path in "${paths[@]}"; do
    if [[ "$path" == */libdevice ]]; then
      setup+="mkdir -p $path && touch $path/libdevice.10.bc && "
    else
      setup+="mkdir -p $(dirname "$path") && touch $path && chmod 755 $path && "
    fi
  done
  printf 'FROM %s\nRUN %strue\nLABEL %s\n' "$(stand_in_python_tag)" "$setup" "$STAND_IN_LABEL" \
    | docker build --quiet --network none --tag "$1" - >/dev/null 2>&1
}

stand_in_python_tag() {
  arg_default "$ROOT/containers/Dockerfile.cpu" PYTHON_IMAGE
}

# Makes sure base image $1 exists; $2 is its kind (python, uv, cuda-runtime, cuda-devel).
ensure_base() {
  local image="$1" kind="$2"
  if have_image "$image"; then
    if is_stand_in "$image"; then echo "base $image: stand-in (kept from an earlier run)"
    else echo "base $image: present"; fi
    return
  fi
  if [[ "$PULL" == 1 ]] && timeout 120 docker pull --quiet "$image" >/dev/null 2>&1; then
    echo "base $image: pulled"
    return
  fi
  case "$kind" in
    python) make_python_stand_in "$image" ;;
    uv) make_uv_stand_in "$image" ;;
    cuda-runtime) ensure_base "$(stand_in_python_tag)" python >/dev/null
      docker tag "$(stand_in_python_tag)" "$image" ;;
    cuda-devel) ensure_base "$(stand_in_python_tag)" python >/dev/null
      make_cuda_devel_stand_in "$image" ;;
  esac
  echo "base $image: stand-in (the pinned image cannot be pulled here)"
}

cd "$ROOT"
# The commit the images are built from, for the provenance in models and push manifests.
commit="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || true)"
if [[ -n "$commit" && -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]]; then
  commit="${commit}-dirty"
fi
for kind in "${KINDS[@]}"; do
  dockerfile="containers/Dockerfile.${kind}"
  build_args=(--build-arg "PETSEG_GIT_COMMIT=${commit}")
  ensure_base "$(arg_default "$dockerfile" UV_IMAGE)" uv
  if [[ "$kind" == cpu ]]; then
    ensure_base "$(arg_default "$dockerfile" PYTHON_IMAGE)" python
  else
    runtime="$(arg_default "$dockerfile" CUDA_RUNTIME_IMAGE)"
    ensure_base "$runtime" cuda-runtime
    ensure_base "$(arg_default "$dockerfile" CUDA_DEVEL_IMAGE)" cuda-devel
    if is_stand_in "$runtime"; then
      # Debian's python3 (3.11) instead of uv's download of PYTHON_VERSION from GitHub.
      build_args+=(--build-arg PYTHON_SOURCE=system --build-arg PYTHON_VERSION=3.11)
    fi
  fi
  log="$(mktemp)"
  if ! docker build --network host --file "$dockerfile" --tag "petseg-${kind}:${TAG}" \
    "${build_args[@]}" . >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    rm -f "$log"
    die "building petseg-${kind}:${TAG} failed (the build's last lines are above)"
  fi
  rm -f "$log"
  echo "built petseg-${kind}:${TAG} ($(docker image inspect --format '{{.Size}}' "petseg-${kind}:${TAG}" | awk '{printf "%.0f MB", $1 / 1e6}'))"
done
