"""KFP wrapper of the end-of-run report: the exit handler's task, run after every other task."""

from kfp import dsl

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def notify_run_end(
    status: dsl.PipelineTaskFinalStatus,
    notify_config: str,
    run_name: str = dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
):
    """Reports the run's final state, failed tasks and error line to the configured webhook.

    Args:
        status: the final status of the tasks the exit handler wraps (filled in by KFP).
        notify_config: NotifyConfig JSON: where the task reads the webhook URL at run time
            (an environment variable or a Secret Manager version), never the URL itself.
        run_name: the run's name, for the report.
    """
    from components.ops import start_task

    start_task()
    from components.platform import notify as step

    final = step.RunStatus.of(status, run_name)
    print(step.run(step.NotifyInputs.of(notify_config, final)).summary())
