"""The migration commands QEMU 6.0 removed, and what replaced them."""

from typing import Any, Dict, Tuple

from migtest.test import MigrationTest

#: Removed command -> (the value to send it, the parameter it set, that
#: parameter's value afterwards).  migrate_set_downtime takes seconds;
#: downtime-limit is in milliseconds.
REMOVED: Dict[str, Tuple[Any, str, int]] = {
    "migrate_set_downtime": (0.5, "downtime-limit", 500),
    "migrate_set_speed": (12_345_678, "max-bandwidth", 12_345_678),
    "migrate-set-cache-size": (32 << 20, "xbzrle-cache-size", 32 << 20),
}


class DeprecatedCommands(MigrationTest):
    """The QEMU under test keeps the contract of its own version.

    Where an old command exists, it must set the parameter it stands for;
    where it is gone, it must be CommandNotFound, and migrate-set-parameters
    must set the same value.  Runs on ``-machine none``: no guest needed.

    :avocado: enable
    :avocado: tags=migration,qmp
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64
    """

    def test_removed_commands(self) -> None:
        """Each removed command: present and working, or gone and replaced."""
        vm = self.launch_machine("-machine", "none")
        known = {c["name"] for c in vm.cmd("query-commands")}
        for command, (value, parameter, expected) in REMOVED.items():
            if command in known:
                vm.cmd(command, value=value)
            else:
                error = self.assert_command_fails(vm, "has not been found", command, value=value)
                self.assertEqual(error.error_class, "CommandNotFound")
                vm.cmd("migrate-set-parameters", **{parameter: expected})
            self.log.info("%s: %s", command, "present" if command in known else "removed")
            self.assertEqual(vm.cmd("query-migrate-parameters")[parameter], expected, parameter)
