# One command on a test-signed Windows VM, from a fresh clone, in an elevated PowerShell:
#   powershell -ExecutionPolicy Bypass -File driver-sample\scripts\run-integration.ps1
# builds fltport and the sample driver, test-signs, installs and loads it, runs the integration
# suite against it, then unloads and uninstalls it. Unverified on Windows: written on Linux.
. "$PSScriptRoot\common.ps1"
Assert-Administrator
Assert-TestSigning

$RepoRoot = Split-Path -Parent $SampleRoot

function Invoke-SampleScript([string]$Name) {
    & (Join-Path $PSScriptRoot $Name)
    if ($LASTEXITCODE -ne 0) { Stop-Step "$Name failed (its message is above)" "fix what $Name said, then run this script again" }
}

function Find-MSBuild {
    $vswhere = Join-Path ${env:ProgramFiles(x86)} 'Microsoft Visual Studio\Installer\vswhere.exe'
    if (-not (Test-Path $vswhere)) { Stop-Step 'Visual Studio was not found (no vswhere.exe)' 'install Visual Studio 2022 with the C++ workload and the WDK' }
    $found = & $vswhere -latest -requires Microsoft.Component.MSBuild -find 'MSBuild\**\Bin\MSBuild.exe' | Select-Object -First 1
    if (-not $found) { Stop-Step 'MSBuild was not found' 'install the "Desktop development with C++" workload of Visual Studio 2022' }
    return $found
}

Push-Location $RepoRoot
$suiteExit = 1
try {
    Invoke-Checked 'installing npm packages (npm ci)' 'install Node.js 22 LTS and check the network to the npm registry' 'npm.cmd' @('ci')
    Invoke-Checked 'building fltport (TypeScript and the addon with MSVC)' 'install Visual Studio 2022 with the C++ workload and CMake' 'npm.cmd' @('run', 'build')
    Invoke-Checked 'building the sample driver with the WDK' 'install the WDK matching your Visual Studio (see driver-sample\README.md)' (Find-MSBuild) @(
        (Join-Path $SampleRoot 'driver\fltportsample.vcxproj'), '/p:Configuration=Release', '/p:Platform=x64')
    Invoke-SampleScript 'new-test-cert.ps1'
    Invoke-SampleScript 'sign.ps1'
    Invoke-SampleScript 'install.ps1'
    Invoke-SampleScript 'load.ps1'

    Write-Step 'integration suite against the loaded driver'
    $env:FLTPORT_SAMPLE_TARGET = 'driver'
    & node scripts/test-windows.mjs test/integration
    $suiteExit = $LASTEXITCODE
} finally {
    if (Test-FilterLoaded) { & (Join-Path $PSScriptRoot 'unload.ps1') }
    & (Join-Path $PSScriptRoot 'uninstall.ps1')
    Pop-Location
}
if ($suiteExit -ne 0) { Stop-Step "the integration suite failed (exit $suiteExit)" 'read the failures above; "fltmc filters" and Event Viewer > System show the driver side' }
Write-Host 'The integration suite passed against the real driver.' -ForegroundColor Green
