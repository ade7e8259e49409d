"""KFP component wrappers, one file per component, each a thin shell around the core.

Bodies import the project package, which our images install; kfp.local's
SubprocessRunner runs the same bodies in the current environment. The
image below is only what a component is compiled with until the pipeline
sets the configured image on each task (``task.set_container_image``).

Every body is parse → ``run`` of its core step → the outcome's metadata, and starts
with ``start_task()``. A call, not a decorator: KFP ships a lightweight component as
the source of its function alone, dropping any decorator (``kfp.dsl.component_factory.
_get_function_source_definition``), so only code inside the body runs in the task.
"""

DEFAULT_IMAGE = "petseg-cpu:dev"


def start_task() -> None:
    """Records an uncaught error for the run-end report and sends logging to the task's log."""
    import logging

    from components.platform.failures import record_failures

    record_failures()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
