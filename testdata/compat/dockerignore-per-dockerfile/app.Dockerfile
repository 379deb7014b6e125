FROM imgbuild-compat-busybox
COPY . /ctx/
