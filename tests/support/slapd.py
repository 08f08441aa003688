"""A real OpenLDAP server (Debian's ``slapd``) for the directory sign-in tests.

Each ``Slapd`` is a child process with a configuration and a database of its own in a
temporary folder, listening on 127.0.0.1 only: plain LDAP (StartTLS offered) and LDAPS on
two free ports, with a certificate signed by a test CA whose file the appliance is given.

The test directory (``dc=example,dc=org``): people under ``ou=people``, groups of names
under ``ou=groups``, one of them nested in another, and a disabled person. OpenLDAP has no
``userAccountControl``; an account is disabled the way the ppolicy overlay does it, with
``pwdAccountLockedTime`` (locked for good with ``000001010000Z``), and the appliance's user
filter leaves such accounts out (docs/sign-in.md says how to write that filter for Active
Directory instead).
"""

from __future__ import annotations

import datetime
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.stack import free_port

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")

BASE = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "admin secret"
READER_DN = f"cn=reader,{BASE}"
READER_PASSWORD = "reader secret"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
# The filter the appliance is given: people by uid, never a locked (disabled) account.
USER_FILTER = "(&(objectClass=inetOrgPerson)(uid=%(user)s)(!(pwdAccountLockedTime=*)))"
PASSWORDS = {"lena": "lena password 1", "tom": "tom password 1", "dora": "dora password 1"}


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def person_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def _directory_ldif() -> str:
    people = {
        "lena": ("Lena", "Lind", ""),
        "tom": ("Tom", "Tran", ""),
        # Disabled in the directory: her password is right, her account is locked.
        "dora": ("Dora", "Dahl", "pwdAccountLockedTime: 000001010000Z\n"),
    }
    entries = [
        f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        f"dn: {READER_DN}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n"
        f"cn: reader\nuserPassword: {READER_PASSWORD}\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
    ]
    for uid, (given, surname, extra) in people.items():
        entries.append(
            f"dn: {person_dn(uid)}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn: {given} {surname}\ngivenName: {given}\nsn: {surname}\n"
            f"mail: {uid}@example.org\nuserPassword: {PASSWORDS[uid]}\n{extra}"
        )
    # hr-staff holds Lena and Dora; all-staff holds Tom and, nested, the whole of hr-staff.
    entries += [
        f"dn: {group_dn('hr-staff')}\nobjectClass: groupOfNames\ncn: hr-staff\n"
        f"member: {person_dn('lena')}\nmember: {person_dn('dora')}\n",
        f"dn: {group_dn('all-staff')}\nobjectClass: groupOfNames\ncn: all-staff\n"
        f"member: {person_dn('tom')}\nmember: {group_dn('hr-staff')}\n",
        # groupOfNames needs a member: the service account stays in when Tom leaves.
        f"dn: {group_dn('finance')}\nobjectClass: groupOfNames\ncn: finance\n"
        f"member: {person_dn('tom')}\nmember: {READER_DN}\n",
    ]
    return "\n".join(entries)


def _write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 (IP and name) signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Appliance test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@dataclass
class Slapd:
    folder: Path
    port: int = 0
    tls_port: int = 0
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def prepare(self) -> None:
        if not Path(SLAPD).exists():
            raise RuntimeError("slapd is missing: deploy/test installs it (apt-get install slapd)")
        data = self.folder / "data"
        data.mkdir(parents=True)
        _, cert, key = _write_certificates(self.folder)
        schemas = "".join(
            f"include {SCHEMA / name}.schema\n"
            for name in ("core", "cosine", "inetorgperson", "nis")
        )
        (self.folder / "slapd.conf").write_text(
            f"{schemas}"
            f"modulepath {MODULES}\nmoduleload back_mdb\nmoduleload ppolicy\n"
            f"pidfile {self.folder / 'slapd.pid'}\n"
            f"TLSCACertificateFile {self.folder / 'ca.pem'}\n"
            f"TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n"
            "access to attrs=userPassword by anonymous auth by * none\n"
            "access to * by users read by * none\n"
            f"database mdb\nmaxsize 10485760\nsuffix {BASE}\nrootdn {ADMIN_DN}\n"
            f'rootpw "{ADMIN_PASSWORD}"\ndirectory {data}\n'
            "index objectClass,uid,member eq\n"
            "overlay ppolicy\n"
        )
        (self.folder / "directory.ldif").write_text(_directory_ldif())
        subprocess.run(
            [
                SLAPADD,
                "-f",
                str(self.folder / "slapd.conf"),
                "-l",
                str(self.folder / "directory.ldif"),
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self.port = self.port or free_port()
        self.tls_port = self.tls_port or free_port()
        log = open(self.folder / "slapd.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [
                SLAPD,
                "-d",
                "0",
                "-f",
                str(self.folder / "slapd.conf"),
                "-h",
                f"{self.uri}/ {self.ldaps_uri}/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"slapd did not listen:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stops the server (the directory is "down" until ``start`` again)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def log_tail(self) -> str:
        path = self.folder / "slapd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # --- changes an administrator makes in the directory ---------------------------------

    def _admin(self):  # type: ignore[no-untyped-def]
        import ldap

        connection = ldap.initialize(self.uri, bytes_mode=False)
        connection.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
        return connection

    def remove_member(self, group: str, member_dn: str) -> None:
        import ldap

        connection = self._admin()
        connection.modify_s(group_dn(group), [(ldap.MOD_DELETE, "member", [member_dn.encode()])])
        connection.unbind_s()

    def add_member(self, group: str, member_dn: str) -> None:
        import ldap

        connection = self._admin()
        connection.modify_s(group_dn(group), [(ldap.MOD_ADD, "member", [member_dn.encode()])])
        connection.unbind_s()

    def lock(self, uid: str) -> None:
        """Disables the account in the directory."""
        import ldap

        connection = self._admin()
        connection.modify_s(
            person_dn(uid), [(ldap.MOD_REPLACE, "pwdAccountLockedTime", [b"000001010000Z"])]
        )
        connection.unbind_s()


def start_slapd(folder: Path) -> Slapd:
    server = Slapd(folder=folder)
    server.prepare()
    server.start()
    return server


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
