"""Command-line settings that make the demo preset submittable to the cloud in tests."""

CLOUD_READY = (
    "--set", "runtime.cpu_image=europe-docker.pkg.dev/petseg-test/petseg/petseg-cpu:0.1.0",
    "--set", "runtime.gpu_image=europe-docker.pkg.dev/petseg-test/petseg/petseg-gpu:0.1.0",
    "--set", "push.destination=gs://petseg-test-models/demo",
)  # fmt: skip
