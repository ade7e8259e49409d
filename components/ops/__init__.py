"""KFP component wrappers, one file per component, each a thin shell around the core.

Bodies import the project package, which our images install; kfp.local's
SubprocessRunner runs the same bodies in the current environment. The
image below is only what a component is compiled with until the pipeline
sets the configured image on each task (``task.set_container_image``).
"""

DEFAULT_IMAGE = "petseg-cpu:dev"
