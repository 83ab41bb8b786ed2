"""Install the migtest library and the committed guest binaries."""

from setuptools import setup

setup(
    name="migtest",
    version="0.1.0",
    description="QEMU live migration tests on Avocado, for every architecture",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="GPL-2.0-or-later",
    python_requires=">=3.9",
    package_dir={"migtest": "lib/migtest", "migtest_guests": "guests"},
    packages=["migtest", "migtest.report", "migtest.stream", "migtest_guests"],
    package_data={
        "migtest": ["py.typed"],
        "migtest_guests": ["README", "*/guest.img", "*/guest-s3.img", "*/guest.bin", "*/guest.elf"],
    },
    install_requires=[
        "avocado-framework>=113,<114",
        # Avocado 113 imports pkg_resources but does not declare setuptools.
        # A Python 3.11 venv happens to ship a setuptools that has it; a
        # 3.12+ venv ships none, and pip would bring one without it (gone
        # from setuptools 81 on; 80.9 and 80.10 warn at every import).  66.1
        # is the oldest whose pkg_resources imports on Python 3.12+.
        # Drop this once the Avocado we require no longer imports it.
        "setuptools>=66.1,<80.9",
        "avocado-framework-plugin-varianter-yaml-to-mux>=113,<114",
        "qemu.qmp>=0.0.6",
        # migtest.tls: each TLS test makes its own CA, certificates and keys,
        # in its work directory, instead of shelling out to certtool or
        # openssl.  42 for the self-tests, which read validity periods as
        # aware datetimes (not_valid_before_utc).
        "cryptography>=42",
        # Avocado's own HTML report, next to ours in every job directory.
        "avocado-framework-plugin-result-html>=113,<114",
        # scripts/remote-run: one Avocado job over several hosts (README,
        # "Going wider"); brings aexpect.
        "avocado-framework-plugin-spawner-remote>=113,<114",
    ],
    entry_points={
        "console_scripts": [
            "migtest-report = migtest.report.jobpage:main",
            "migtest-versions-grid = migtest.report.versions_grid:main",
            "migtest-stream = migtest.stream:main",
        ]
    },
    extras_require={
        # What `make check` needs on top: tests, formatter/linter, type checker,
        # and what the packaging self-test builds a plain install with.
        "dev": ["pytest>=7", "ruff>=0.5", "mypy>=1.8", "wheel"],
    },
)
