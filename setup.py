"""Packaging of the data folders (metadata and dependencies are in pyproject.toml).

The source tree keeps configs, task definitions and MJCF scenes at the top level, where a reader
finds them (conf/, tasks/, assets/). The build maps them into the package so that an installed
wheel carries them: conf/ -> robopolicy/conf, tasks/ -> robopolicy/conf/task (the Hydra ``task``
group; the checkout's conf/task link is not needed), assets/ -> robopolicy/assets.
pyproject.toml alone cannot combine package discovery with these extra mapped packages, hence
this file. robopolicy.resources finds them in both layouts.
"""

from setuptools import find_packages, setup

DATA_PACKAGES = {"robopolicy.conf": "conf", "robopolicy.conf.task": "tasks", "robopolicy.assets": "assets"}

setup(
    packages=find_packages(include=["robopolicy", "robopolicy.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
    package_data={
        "robopolicy.conf": ["*.yaml", "**/*.yaml"],
        "robopolicy.conf.task": ["*.yaml"],
        "robopolicy.assets": ["*.xml"],
    },
    # conf/task is a link to tasks/ in the checkout; robopolicy.conf.task above ships those files once.
    exclude_package_data={"robopolicy.conf": ["task/*"]},
)
