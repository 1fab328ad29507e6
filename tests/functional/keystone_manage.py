"""Several keystone-manage commands in one process, for the tests' Keystone.

Runs inside .keystone-venv as
``python -P -m tests.functional.keystone_manage CONFIG_FILE COMMAND...``,
each COMMAND one argument (``"fernet_setup --keystone-user root ..."``),
run in order by keystone-manage's own entry point. A keystone-manage
process spends about two seconds of CPU importing Keystone before it
does anything, and every test process prepares a Keystone of its own on
a machine whose cores its other tests share, so the commands share one
import. A failing command ends the process with keystone-manage's status.
"""

import sys

from keystone import conf
from keystone.cmd import cli


def main(argv: list[str]) -> None:
    """Run each command of ``argv[1:]`` with the configuration file ``argv[0]``."""
    config, *commands = argv
    for command in commands:
        cli.main(argv=["keystone-manage", "--config-file", config, *command.split()])
        # keystone-manage parses a command line once per process: forget it.
        conf.CONF.reset()


if __name__ == "__main__":
    main(sys.argv[1:])
