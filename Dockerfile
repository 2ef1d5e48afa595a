# meshmon in a container: one static binary and nothing else. Build the
# binary first (no image is pulled to build it):
#   CGO_ENABLED=0 go build -o dist/meshmon ./cmd/meshmon
#   docker build -t meshmon:dev .      # or: docker compose up --build
FROM scratch
COPY dist/meshmon /meshmon
ENTRYPOINT ["/meshmon"]
