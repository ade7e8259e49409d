#!/usr/bin/env bash
# Builds the petseg CPU and GPU component images and pushes them to Artifact Registry.
#
# Each image gets two tags: the package version (pyproject.toml) and the git commit, so a
# pipeline can name a release or the exact commit it was built from. By default the build runs
# on Cloud Build (containers/cloudbuild.yaml); --local builds with the local Docker engine.
# --pin-base-digests resolves every base image tag (the Dockerfiles' *_IMAGE build arguments) to
# its digest first, so the build is reproducible even if a tag is moved upstream. After a push
# the script prints each image's digest reference: put that in runtime.cpu_image / gpu_image.
# The commit also goes into the images as PETSEG_GIT_COMMIT, which trained models record.
set -euo pipefail
shopt -s inherit_errexit  # a failed docker pull inside $(...) stops the build

usage() {
  cat <<'USAGE'
Usage: containers/build.sh --project PROJECT [options]

  --project PROJECT       Google Cloud project that owns the Artifact Registry repository
  --region REGION         Artifact Registry region (default: us-central1)
  --repository NAME       Artifact Registry Docker repository (default: petseg)
  --local                 build with the local Docker engine instead of Cloud Build
  --no-push               with --local: build and tag only
  --pin-base-digests      with --local: build from base images pinned by digest
  --only cpu|gpu          build one image (default: both)
  --version VERSION       version tag (default: the version in pyproject.toml)
  --git-sha SHA           commit tag (default: git rev-parse --short=12 HEAD, "-dirty" if modified)
  --dry-run               print the commands instead of running them
  -h, --help              show this help
USAGE
}

die() {
  echo "build.sh: $*" >&2
  exit 2
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROJECT=""
REGION="us-central1"
REPOSITORY="petseg"
MODE="cloud-build"
PUSH=1
PIN=0
ONLY=""
VERSION=""
GIT_SHA=""
DRY_RUN=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --project) PROJECT="${2:-}"; shift 2 ;;
    --region) REGION="${2:-}"; shift 2 ;;
    --repository) REPOSITORY="${2:-}"; shift 2 ;;
    --local) MODE="local"; shift ;;
    --no-push) PUSH=0; shift ;;
    --pin-base-digests) PIN=1; shift ;;
    --only) ONLY="${2:-}"; shift 2 ;;
    --version) VERSION="${2:-}"; shift 2 ;;
    --git-sha) GIT_SHA="${2:-}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

# Validate everything before anything is built or sent.
[[ -n "$PROJECT" ]] || die "--project is required (the project that owns the repository)"
[[ "$PROJECT" =~ ^[a-z][-a-z0-9]{4,28}[a-z0-9]$ ]] \
  || die "--project '$PROJECT' is not a project id (6-30 lowercase letters, digits, '-')"
[[ "$REGION" =~ ^[a-z]+-[a-z]+[0-9]+$ ]] || die "--region '$REGION' is not like 'us-central1'"
[[ "$REPOSITORY" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
  || die "--repository '$REPOSITORY' must be lowercase letters, digits and '-'"
case "$ONLY" in
  "") KINDS=(cpu gpu) ;;
  cpu | gpu) KINDS=("$ONLY") ;;
  *) die "--only '$ONLY' must be cpu or gpu" ;;
esac
if [[ "$MODE" == "cloud-build" && ( "$PUSH" == 0 || "$PIN" == 1 ) ]]; then
  die "--no-push and --pin-base-digests go with --local (Cloud Build always pins and pushes)"
fi

if [[ -z "$VERSION" ]]; then
  VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1)"
  [[ -n "$VERSION" ]] || die "no version found in $ROOT/pyproject.toml; pass --version"
fi
[[ "$VERSION" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--version '$VERSION' is not a valid tag"
if [[ -z "$GIT_SHA" ]]; then
  GIT_SHA="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null)" \
    || die "not a git checkout; pass --git-sha"
  if [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]]; then
    GIT_SHA="${GIT_SHA}-dirty"
  fi
fi
[[ "$GIT_SHA" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--git-sha '$GIT_SHA' is not a valid tag"

REGISTRY="${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}"

run() {
  echo "+ $*"
  if [[ "$DRY_RUN" == 0 ]]; then
    "$@"
  fi
}

# Prints one "--build-arg=NAME=tag@sha256:..." line for every *_IMAGE argument of a Dockerfile.
pinned_build_args() {
  local dockerfile="$1" name image digest
  while IFS='=' read -r name image; do
    if [[ "$DRY_RUN" == 1 ]]; then
      echo "+ docker pull $image" >&2
      echo "--build-arg=${name}=${image}@sha256:DIGEST"
      continue
    fi
    docker pull --quiet "$image" >&2
    digest="$(docker image inspect --format '{{index .RepoDigests 0}}' "$image")"
    echo "--build-arg=${name}=${image}@${digest#*@}"
  done < <(sed -n 's/^ARG \([A-Z_]*_IMAGE\)=\(.*\)$/\1=\2/p' "$dockerfile")
}

cd "$ROOT"
echo "petseg images ${VERSION} (${GIT_SHA}) -> ${REGISTRY}"

if [[ "$MODE" == "cloud-build" ]]; then
  run gcloud builds submit "$ROOT" \
    --project "$PROJECT" \
    --config "$ROOT/containers/cloudbuild.yaml" \
    --substitutions "_REGION=${REGION},_REPOSITORY=${REPOSITORY},_VERSION=${VERSION},_GIT_SHA=${GIT_SHA}"
  exit 0
fi

for kind in "${KINDS[@]}"; do
  image="${REGISTRY}/petseg-${kind}"
  dockerfile="$ROOT/containers/Dockerfile.${kind}"
  build_args=()
  if [[ "$PIN" == 1 ]]; then
    pinned="$(pinned_build_args "$dockerfile")"
    mapfile -t build_args <<<"$pinned"
  fi
  run docker build --file "$dockerfile" --tag "${image}:${VERSION}" --tag "${image}:${GIT_SHA}" \
    "--build-arg=PETSEG_GIT_COMMIT=${GIT_SHA}" "${build_args[@]}" "$ROOT"
  if [[ "$PUSH" == 1 ]]; then
    run docker push "${image}:${VERSION}"
    run docker push "${image}:${GIT_SHA}"
    if [[ "$DRY_RUN" == 0 ]]; then
      echo "runtime.${kind}_image=$(docker image inspect --format '{{index .RepoDigests 0}}' "${image}:${VERSION}")"
    fi
  fi
done
