"""A producer process for the SDK's fault-injection tests (run as a script).

    producer.py run   URL TOKEN SPOOL ACKED [PAUSE]
                                              record events until killed (PAUSE seconds
                                              apart); after each record() returns,
                                              append its id to ACKED
    producer.py drain URL TOKEN SPOOL         deliver whatever the spool holds, then exit
    producer.py full  URL TOKEN SPOOL COUNT   record COUNT events with the file size limit
                                              set low (a disk that fills up), flush, and
                                              print the client's counters as JSON
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time

from trailseal.client import AuditClient


def main() -> int:
    mode, url, token, spool = sys.argv[1:5]
    if mode == "full":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_384, 16_384))
    client = AuditClient(url, token, spool, max_delay=0.02)
    if mode == "drain":
        delivered = client.flush(120)
        client.close()
        return 0 if delivered else 1
    if mode == "full":
        ids = [client.record("disk.full.tested", actor=("service", "producer"),
                             target=("disk", "spool"), metadata={"i": i, "pad": "x" * 200})
               for i in range(int(sys.argv[5]))]
        delivered = client.flush(60)
        client.close()
        print(json.dumps({"delivered": delivered, "ids": ids, **client.stats.as_dict()}))
        return 0
    acked = os.open(sys.argv[5], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    i = 0
    while True:
        if pause:
            time.sleep(pause)
        event_id = client.record("crash.test.recorded", actor=("service", "producer"),
                                 target=("run", str(os.getpid())), metadata={"i": i})
        os.write(acked, (event_id + "\n").encode())
        i += 1


if __name__ == "__main__":
    sys.exit(main())
