"""Forwards TCP connections from LISTEN_HOST (a free port) to TARGET_HOST:TARGET_PORT.

SAM's function containers cannot reach this machine's loopback, where the
database and the local AWS endpoint listen; `scripts/sam.sh` starts one relay
per service on the gateway address of the Docker network it created, and
nowhere else. The chosen port is written to PORT_FILE once listening.

usage: relay.py LISTEN_HOST TARGET_HOST TARGET_PORT PORT_FILE
"""

import asyncio
import os
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen_host, target_host, target_port, port_file):
    async def serve(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(serve, listen_host, 0)
    port = server.sockets[0].getsockname()[1]
    tmp = f"{port_file}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    listen, host, port, out = sys.argv[1:]
    try:
        asyncio.run(main(listen, host, int(port), out))
    except KeyboardInterrupt:
        pass
