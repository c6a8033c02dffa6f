"""E-mail to a fax's sender when it was sent or failed ([fax] smtp_*), with aiosmtplib.
A mail that cannot be sent is logged, never in the way of the fax."""

from __future__ import annotations

import logging
from email.message import EmailMessage

import aiosmtplib

from cti.config import FaxConfig
from cti.db.models import FaxDocument

log = logging.getLogger("cti.fax.mail")

SUBJECTS = {"done": "Fax to {number} sent", "failed": "Fax to {number} NOT sent"}


class FaxMailer:
    def __init__(self, options: FaxConfig) -> None:
        self.options = options

    @property
    def enabled(self) -> bool:
        return bool(self.options.smtp_host and self.options.mail_from)

    def message(self, job: FaxDocument, to: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"], mail["To"] = self.options.mail_from, to
        mail["Subject"] = SUBJECTS[job.status].format(number=job.number)
        lines = [
            f"Fax {job.id} to {job.number}: {'sent' if job.status == 'done' else 'failed'}.",
            f"Pages: {job.pages}. Dials: {job.dials}. Transmissions: {job.tries}.",
        ]
        if job.remote_station:
            lines.append(f"The far end's station: {job.remote_station}.")
        if job.error:
            lines.append(f"Why: {job.error}")
        mail.set_content("\n".join(lines) + "\n")
        return mail

    async def notify(self, job: FaxDocument, to: str) -> None:
        options = self.options
        password = options.smtp_password.get_secret_value() if options.smtp_password else None
        try:
            await aiosmtplib.send(
                self.message(job, to),
                hostname=options.smtp_host,
                port=options.smtp_port,
                use_tls=options.smtp_security == "tls",
                start_tls=True if options.smtp_security == "starttls" else False,
                username=options.smtp_username or None,
                password=password,
                timeout=30,
            )
        except (aiosmtplib.SMTPException, OSError) as e:
            log.warning(
                "cannot send a fax notice by e-mail: %s",
                type(e).__name__,
                extra={"fields": {"fax": job.id}},
            )
