"""The roof over the kernel: the tryggheim command (cli), the one-machine demo, the home
simulator and the launchers they start (a Mosquitto broker, a test certificate authority). The
kernel (the rest of tryggheim/) never imports this package."""
