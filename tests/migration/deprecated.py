"""The migration commands QEMU 6.0 removed, and what replaced them."""

from typing import Any, Dict, Tuple

from migtest.endpoint import Endpoint
from migtest.errors import QMPError
from migtest.qapi import MigrationParameters
from migtest.test import MigrationTest

#: Removed command -> (the value to send it, the parameter it set with that
#: parameter's value afterwards).  migrate_set_downtime takes seconds;
#: downtime-limit is in milliseconds.
REMOVED: Dict[str, Tuple[Any, MigrationParameters]] = {
    "migrate_set_downtime": (0.5, {"downtime-limit": 500}),
    "migrate_set_speed": (12_345_678, {"max-bandwidth": 12_345_678}),
    "migrate-set-cache-size": (32 << 20, {"xbzrle-cache-size": 32 << 20}),
}


class DeprecatedCommands(MigrationTest):
    """The QEMU under test keeps the contract of its own version.

    Where an old command exists, it must set the parameter it stands for;
    where it is gone, it must be CommandNotFound, and migrate-set-parameters
    must set the same value.  Runs on ``-machine none``: no guest needed.

    :avocado: enable
    :avocado: tags=migration,seed,qmp
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_removed_commands(self) -> None:
        """Each removed command: present and working, or gone and replaced."""
        vm = Endpoint(self.launch_machine("-machine", "none"))
        for command, (value, parameter) in REMOVED.items():
            present = command in vm.supported_commands()
            if present:
                vm.send_removed_command(command, value)
            else:
                with self.assertRaises(QMPError, msg=f"{command} is not listed but works") as gone:
                    vm.send_removed_command(command, value)
                self.assertEqual(gone.exception.error_class, "CommandNotFound", str(gone.exception))
                vm.set_parameters(parameter)
            self.log.info("%s: %s", command, "present" if present else "removed")
            current: Dict[str, Any] = dict(vm.parameters())
            self.assertEqual(current, {**current, **parameter}, command)
