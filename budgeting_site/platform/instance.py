import os
import socket

# Names this process in receipts' `actor.instance`: host and pid, nothing personal.
INSTANCE_ID = f"{socket.gethostname()}:{os.getpid()}"
