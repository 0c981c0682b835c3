"""A real Home Assistant for jkmon's tests: its configuration, and its websocket API.

Run with the Python of Home Assistant's own virtual environment (scripts/test.sh makes it):

    ha.py config DIR HTTP_PORT      writes a minimal configuration into DIR
    ha.py ws URL TOKEN JSON         sends each message of the JSON list over the websocket
                                    API and prints the results as one JSON list

Everything is on the loopback; nothing here reaches the internet.
"""

import asyncio
import json
import os
import sys

CONFIGURATION = """\
homeassistant:
  name: jkmon test
  latitude: 52.52
  longitude: 13.40
  elevation: 34
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
websocket_api:
config:
energy:
history:
onboarding:
recorder:
  commit_interval: 1
logger:
  default: warning
"""


def config(directory, port):
    os.makedirs(os.path.join(directory, ".storage"), exist_ok=True)
    with open(os.path.join(directory, "configuration.yaml"), "w") as f:
        f.write(CONFIGURATION.format(port=port))
    # the core_config step of onboarding sets up integrations that want the internet: done
    onboarding = {
        "version": 4,
        "minor_version": 1,
        "key": "onboarding",
        "data": {"done": ["core_config"]},
    }
    with open(os.path.join(directory, ".storage", "onboarding"), "w") as f:
        json.dump(onboarding, f)


async def ws(url, token, messages):
    import aiohttp

    out = []
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.ws_connect(url + "/api/websocket") as w:
            first = await w.receive_json()
            assert first["type"] == "auth_required", first
            await w.send_json({"type": "auth", "access_token": token})
            auth = await w.receive_json()
            assert auth["type"] == "auth_ok", auth
            for i, message in enumerate(messages, start=1):
                await w.send_json(dict(message, id=i))
                while True:
                    answer = await w.receive_json()
                    if answer.get("id") == i and answer.get("type") == "result":
                        out.append(answer)
                        break
    print(json.dumps(out))


def main(argv):
    if len(argv) == 4 and argv[1] == "config":
        config(argv[2], int(argv[3]))
    elif len(argv) == 5 and argv[1] == "ws":
        asyncio.run(ws(argv[2], argv[3], json.loads(argv[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
