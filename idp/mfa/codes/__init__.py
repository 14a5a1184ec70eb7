"""One-time codes sent by email, text message (SMS) or voice call: the code factor
(:mod:`.factor`), its three channels (:mod:`.email`, :mod:`.phone`), the codes
themselves (:mod:`.otp`), telephone numbers (:mod:`.numbers`) and the pages
(:mod:`.views`)."""

from .email import EmailFactor
from .factor import CodeFactor
from .phone import SmsFactor, VoiceFactor

__all__ = ["CodeFactor", "EmailFactor", "SmsFactor", "VoiceFactor"]
