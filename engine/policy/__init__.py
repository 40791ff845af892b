"""The sending policy, pure: calendars (quiet hours, business days, holidays) and frequency caps.

Standard library only, no database and no clock, so the dispatcher, the simulator and the tests
all ask the same function the same question.
"""

from engine.policy.calendar import Calendar
from engine.policy.decide import Candidate, Cap, PastSend, Period, Verdict, decide, order_key

__all__ = ["Calendar", "Candidate", "Cap", "PastSend", "Period", "Verdict", "decide", "order_key"]
