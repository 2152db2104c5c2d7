# Sourced by scripts/install_*.sh. apt_install_pinned SPEC...: installs the Debian packages given
# as NAME=VERSION (or a bare NAME: any version) that are missing or at another version; runs apt
# only when something is missing (apt-get update first, as a fresh machine needs).
apt_install_pinned() {
    local missing=() spec name version installed
    for spec in "$@"; do
        name=${spec%%=*}
        version=${spec#*=}
        installed=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
        case "$installed" in
            "install ok installed"*)
                if [ "$version" != "$spec" ] && [ "${installed##* }" != "$version" ]; then missing+=("$spec"); fi ;;
            *) missing+=("$spec") ;;
        esac
    done
    if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
    echo "meshllama: installing ${missing[*]}" >&2
    local sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
