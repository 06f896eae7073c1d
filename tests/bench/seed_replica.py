"""A faithful replica of the original polling script (../shared/seed/): requests.get(url).json(),
check every CHANNEL's ChannelSize / ChannelFillPercentage, DingtalkChatbot markdown when too full.

Run only by the benchmarks (tests/bench/run.sh), to measure what the script costs a Flume host
beside the sidecar. It polls each URL in turn, then sleeps out the interval, as the original
loop did.
"""

import argparse
import time

import requests
from dingtalkchatbot.chatbot import DingtalkChatbot


def send_markdown(ding, size, channel, percentage, host):
    ding.send_markdown(
        title="flume监控提醒",
        text="> ### host :{host}\n\n"
        "> Channel :{Channel}\n\n"
        "> ChannelSize :{ChannelSize}\n\n"
        "> ChannelFillPercentage :{ChannelFillPercentage}\n\n".format(
            ChannelSize=size, Channel=channel, ChannelFillPercentage=percentage, host=host
        ),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--webhook", required=True)
    parser.add_argument("--secret")
    parser.add_argument("--threshold", type=float, default=80.0)
    args = parser.parse_args()
    ding = DingtalkChatbot(args.webhook, secret=args.secret)
    while True:
        started = time.monotonic()
        for url in args.url:
            try:
                r = requests.get(url)
                info = r.json()
            except Exception as e:  # the original had no handling; keep polling for the bench
                print("poll failed:", url, e, flush=True)
                continue
            for key, attrs in info.items():
                if not key.startswith("CHANNEL."):
                    continue
                percentage = float(attrs.get("ChannelFillPercentage", "0"))
                if percentage > args.threshold:
                    send_markdown(ding, attrs.get("ChannelSize"), key, percentage, url)
        time.sleep(max(0.0, args.interval - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
