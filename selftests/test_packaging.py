"""The package as users get it: Avocado finds every test, and a plain
install finds the guest binaries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

#: Every migration test.  Avocado finds tests statically and silently finds
#: none when an import breaks, so this list is checked exactly.
EXPECTED_TESTS = {
    "tests/migration/cancel.py:Cancel.test_every_status_is_accounted_for",
    "tests/migration/cancel.py:Cancel.test_before_migrating",
    "tests/migration/cancel.py:Cancel.test_while_active",
    "tests/migration/cancel.py:Cancel.test_at_pre_switchover",
    "tests/migration/cancel.py:Cancel.test_twice",
    "tests/migration/cancel.py:Cancel.test_after_completion",
    "tests/migration/cancel.py:Cancel.test_after_failure",
    "tests/migration/cancel.py:Cancel.test_in_postcopy",
    "tests/migration/cancel.py:Cancel.test_in_postcopy_paused",
    "tests/migration/cancel.py:Cancel.test_in_postcopy_recovery",
    "tests/migration/multifd.py:Multifd.test_tcp",
    "tests/migration/multifd.py:Multifd.test_qpl",
    "tests/migration/multifd.py:Multifd.test_uadk",
    "tests/migration/multifd.py:Multifd.test_qatzip",
    "tests/migration/multifd.py:Multifd.test_channels",
    "tests/migration/multifd.py:Multifd.test_zlib",
    "tests/migration/multifd.py:Multifd.test_zstd",
    "tests/migration/multifd.py:Multifd.test_zero_page_detection_legacy",
    "tests/migration/multifd.py:Multifd.test_zero_page_detection_none",
    "tests/migration/multifd.py:Multifd.test_cancel_then_migrate_again",
    "tests/migration/multifd.py:Multifd.test_cancel_with_postcopy_ram_then_migrate_again",
    "tests/migration/multifd.py:Multifd.test_postcopy",
    "tests/migration/multifd.py:Multifd.test_postcopy_preempt",
    "tests/migration/tls.py:Tls.test_psk_match",
    "tests/migration/tls.py:Tls.test_psk_over_unix",
    "tests/migration/tls.py:Tls.test_psk_mismatch",
    "tests/migration/tls.py:Tls.test_no_tls",
    "tests/migration/tls.py:Tls.test_x509_default_host",
    "tests/migration/tls.py:Tls.test_x509_override_host",
    "tests/migration/tls.py:Tls.test_x509_hostile_client",
    "tests/migration/tls.py:Tls.test_x509_reject_anon_client",
    "tests/migration/tls.py:Tls.test_x509_allow_anon_client",
    "tests/migration/tls.py:Tls.test_x509_friendly_client",
    "tests/migration/tls.py:Tls.test_x509_unauthorized_client",
    "tests/migration/tls.py:Tls.test_x509_no_hostname",
    "tests/migration/tls.py:Tls.test_x509_mismatch_host",
    "tests/migration/tls.py:Tls.test_multifd_psk_match",
    "tests/migration/tls.py:Tls.test_multifd_psk_mismatch",
    "tests/migration/tls.py:Tls.test_multifd_x509",
    "tests/migration/tls.py:Tls.test_multifd_x509_mismatch_host",
    "tests/migration/tls.py:Tls.test_postcopy_psk",
    "tests/migration/tls.py:Tls.test_postcopy_recovery_psk",
    "tests/migration/tls.py:Tls.test_postcopy_preempt_psk",
    "tests/migration/tls.py:Tls.test_postcopy_preempt_recovery_psk",
    "tests/migration/capabilities.py:Xbzrle.test_xbzrle",
    "tests/migration/dirty.py:DirtyRing.test_live_precopy",
    "tests/migration/dirty.py:DirtyRing.test_vcpu_dirty_limit",
    "tests/migration/dirty.py:DirtyLimit.test_dirty_limit",
    "tests/migration/capabilities.py:IgnoreShared.test_ignore_shared",
    "tests/migration/capabilities.py:AutoConverge.test_auto_converge",
    "tests/migration/capabilities.py:AutoConverge.test_throttle_steps",
    "tests/migration/capabilities.py:SwitchoverAck.test_switchover_ack",
    "tests/migration/colo.py:Colo.test_primary_failover",
    "tests/migration/colo.py:Colo.test_secondary_failover",
    "tests/migration/colo.py:Colo.test_primary_failover_multifd",
    "tests/migration/colo.py:Colo.test_secondary_failover_multifd",
    "tests/migration/colo.py:Colo.test_secondary_takes_over_dead_primary",
    "tests/migration/colo.py:Colo.test_primary_outlives_dead_secondary",
    "tests/migration/rdma.py:Rdma.test_rdma",
    "tests/migration/rdma.py:Rdma.test_rdma_pin_all",
    "tests/migration/cpr.py:Cpr.test_reboot",
    "tests/migration/cpr.py:Cpr.test_reboot_ram_in_file",
    "tests/migration/cpr.py:Cpr.test_transfer",
    "tests/migration/cpr.py:Cpr.test_exec",
    "tests/migration/deprecated.py:DeprecatedCommands.test_removed_commands",
    "tests/migration/failures.py:BadDestination.test_nobody_listening",
    "tests/migration/interface.py:Interface.test_uri_and_channels",
    "tests/migration/interface.py:Interface.test_neither_uri_nor_channels",
    "tests/migration/interface.py:Interface.test_hmp_parameter_round_trip",
    "tests/migration/file.py:File.test_file",
    "tests/migration/file.py:File.test_channels",
    "tests/migration/file.py:File.test_offset",
    "tests/migration/file.py:File.test_offset_fdset",
    "tests/migration/file.py:File.test_bad_offset",
    "tests/migration/file.py:File.test_dev_full_leaks_no_descriptor",
    "tests/migration/file.py:MappedRam.test_stopped",
    "tests/migration/file.py:MappedRam.test_live",
    "tests/migration/file.py:MappedRam.test_multifd_stopped",
    "tests/migration/file.py:MappedRam.test_multifd_live",
    "tests/migration/file.py:MappedRam.test_multifd_fdset",
    "tests/migration/file.py:MappedRam.test_direct_io",
    "tests/migration/file.py:MappedRam.test_direct_io_by_path",
    "tests/migration/file.py:MappedRam.test_ignore_shared",
    "tests/migration/file.py:MappedRam.test_postcopy",
    "tests/migration/faults.py:Faults.test_corrupted_stream",
    "tests/migration/faults.py:Faults.test_destination_killed",
    "tests/migration/faults.py:Faults.test_link_cut_during_postcopy",
    "tests/migration/tampering.py:StreamTampering.test_one_byte_of_one_page",
    "tests/migration/tampering.py:StreamTampering.test_two_pages_swapped",
    "tests/migration/tampering.py:StreamTampering.test_zero_page_sent_as_data",
    "tests/migration/tampering.py:StreamTampering.test_page_sent_twice_later_copy_stale",
    "tests/migration/tampering.py:StreamTampering.test_pages_over_multifd_pass_untouched",
    "tests/migration/tampering.py:PostcopyTampering.test_one_byte_into_paused_destination",
    "tests/migration/tampering.py:PostcopyTampering.test_zero_page_into_paused_destination",
    "tests/migration/tampering.py:PostcopyTampering.test_stale_page_into_paused_destination",
    "tests/migration/tampering.py:PostcopyTampering.test_one_byte_inside_test_range_running",
    "tests/migration/tampering.py:PostcopyTampering.test_zero_page_outside_test_range_running",
    "tests/migration/tampering.py:PostcopyTampering.test_stale_page_inside_test_range_running",
    "tests/migration/postcopy.py:Postcopy.test_postcopy",
    "tests/migration/postcopy.py:Postcopy.test_recovery",
    "tests/migration/postcopy.py:Postcopy.test_paused_destination",
    "tests/migration/postcopy.py:Postcopy.test_recovery_paused_destination",
    "tests/migration/postcopy.py:PostcopyPreempt.test_preempt",
    "tests/migration/postcopy.py:PostcopyPreempt.test_preempt_recovery",
    "tests/migration/postcopy.py:PostcopyPreempt.test_preempt_paused_destination",
    "tests/migration/postcopy.py:RecoveryFailures.test_refused_then_recovered",
    "tests/migration/postcopy.py:RecoveryFailures.test_broken_in_handshake",
    "tests/migration/postcopy.py:RecoveryFailures.test_silent_then_broken",
    "tests/migration/precopy.py:Precopy.test_unix",
    "tests/migration/precopy.py:Precopy.test_channels",
    "tests/migration/precopy.py:Precopy.test_tcp",
    "tests/migration/precopy.py:Precopy.test_fd",
    "tests/migration/precopy.py:Precopy.test_exec",
    "tests/migration/suspend.py:Suspend.test_precopy_live",
    "tests/migration/suspend.py:Suspend.test_precopy_not_live",
    "tests/migration/suspend.py:Suspend.test_postcopy",
    "tests/migration/validate_uuid.py:ValidateUuid.test_same_uuid",
    "tests/migration/validate_uuid.py:ValidateUuid.test_different_uuid",
    "tests/migration/validate_uuid.py:ValidateUuid.test_uuid_only_on_source",
    "tests/migration/validate_uuid.py:ValidateUuid.test_uuid_only_on_destination",
    "tests/migration/vcpu_faults.py:VcpuFaults.test_each_register",
    "tests/migration/vcpu_faults.py:VcpuFaults.test_each_register_second_vcpu",
}


def test_avocado_lists_every_migration_test() -> None:
    avocado = Path(sys.executable).parent / "avocado"
    listing = subprocess.run(
        [str(avocado), "list", "tests/migration"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found = {line.split()[1] for line in listing.splitlines() if line.startswith("avocado-")}
    assert found == EXPECTED_TESTS


def test_plain_install_finds_guest_binaries(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        check=True,
        timeout=300,
    )  # fmt: skip
    probe = "from migtest.arch import PROFILES; print(*(p.guest_file() for p in PROFILES.values()))"
    env = {**os.environ, "PYTHONPATH": str(target)}
    paths = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    assert paths
    for path in paths:
        assert Path(path).is_file()
        assert Path(path).is_relative_to(target), f"{path} is not the installed copy"
