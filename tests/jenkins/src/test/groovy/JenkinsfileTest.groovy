import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertFalse
import static org.junit.Assert.assertTrue
import static org.junit.Assert.fail

import org.junit.Before
import org.junit.Test

/**
 * Runs the repository's Jenkinsfile under DeclarativePipelineHarness (our own: every step only
 * recorded, no Jenkins) and checks what it would do: which stages run and in what order, that
 * every shell step names commands and files this repository has, that the RUN_* parameters
 * switch their stages, that `post` takes the virtual lab down whatever failed, and that a real
 * lab is never brought up or down.
 *
 * A failing shell step (failOn) fails its stage and the build as in Jenkins: later stages are
 * skipped and the `post` sections still run.
 */
class JenkinsfileTest {

    static final File ROOT = new File(System.getProperty('repo.root', '../..')).canonicalFile

    static final String VIRTUAL = 'inventories/lab.py'
    static final String REAL = 'inventories/real_lab_example.py'

    static final List<String> ALL_STAGES = [
        'Setup', 'Lint and unit tests', 'Build artifacts', 'Lab up', 'Platform', 'Switch routing (SONiC)',
        'SD-WAN peering', 'K3S (SoW Task 1)', 'Parsec (SoW Task 2)', 'Node certification (Scenario 2)', 'EdgeFaaS (SoW Task 3)',
        'Image functions and the registry', 'Triton (SoW Task 4)', 'Monitoring', 'Console', 'Security scans', 'Faults', 'Perf',
    ]
    // RUN_* parameter -> [its stage, the scripts/task task it runs]
    static final Map<String, List<String>> TOGGLES = [
        RUN_SONIC   : ['Switch routing (SONiC)', 'sonic'],
        RUN_SDWAN   : ['SD-WAN peering', 'sdwan'],
        RUN_PARSEC  : ['Parsec (SoW Task 2)', 'parsec'],
        RUN_K3S     : ['K3S (SoW Task 1)', 'k3s'],
        RUN_NODEAUTH: ['Node certification (Scenario 2)', 'nodeauth'],
        RUN_TRITON  : ['Triton (SoW Task 4)', 'triton'],
        RUN_MONITORING: ['Monitoring', 'monitoring'],
        RUN_CONSOLE : ['Console', 'console'],
        RUN_FAULTS  : ['Faults', 'faults'],
        RUN_EDGEFAAS: ['EdgeFaaS (SoW Task 3)', 'edgefaas'],
        RUN_REGISTRY: ['Image functions and the registry', 'registry'],
        RUN_SCANS   : ['Security scans', 'scan'],
        RUN_PERF    : ['Perf', 'perf'],
    ]
    // Tasks that deploy nothing (the console is served by the gateway): they only verify.
    static final Set<String> VERIFY_ONLY = ['console', 'sdwan', 'faults'] as Set
    // Tasks that neither deploy nor run an integration suite: the security scans of every device.
    static final Set<String> SCANS = ['scan'] as Set
    // Commands a shell step may use that are not this repository's: the agent's basics.
    static final Set<String> SYSTEM_COMMANDS = ['mkdir', 'tee', 'true'] as Set

    /** The latest run of the Jenkinsfile. */
    DeclarativePipelineHarness pipeline
    /** A shell step whose script contains this fails (a non-zero exit). */
    String failOn = null

    @Before
    void setUp() {
        reset()
    }

    // ---- running the Jenkinsfile -------------------------------------------------------------

    /** Forgets a previous run of the Jenkinsfile in the same test. */
    private void reset() {
        failOn = null
        pipeline = new DeclarativePipelineHarness()
        pipeline.env = [WORKSPACE: '/var/lib/jenkins/workspace/edgefaas', PATH: '/usr/bin:/bin']
    }

    private void runJenkinsfile(Map params = [:]) {
        String failing = failOn
        pipeline.shFails = { String script -> failing != null && script.contains(failing) }
        pipeline.run(new File(ROOT, 'Jenkinsfile'), params)
    }

    /** Every shell step run, in order: its script and the SSH credential variables it saw. */
    private List<Map> shells() {
        pipeline.calls('sh').collect {
            [script: it.args[0] as String, sshKey: it.env.EDGEFAAS_SSH_KEY, sshUser: it.env.EDGEFAAS_SSH_USER]
        }
    }

    private List<String> stagesRun() {
        pipeline.stagesRun
    }

    private List<String> scripts() {
        pipeline.shScripts()
    }

    /** The tasks `scripts/task` was called with, in order. */
    private List<String> tasksRun() {
        scripts().findAll { it.startsWith('scripts/task ') }.collect { it.tokenize()[1] }
    }

    private List calls(String method) {
        pipeline.calls(method)
    }

    private String result() {
        pipeline.result
    }

    // ---- what the repository has -------------------------------------------------------------

    private static String read(String path) {
        new File(ROOT, path).text
    }

    /** The tasks scripts/task accepts: the labels of its `case $task in` branches. */
    private static Set<String> knownTasks() {
        Set<String> tasks = [] as Set
        read('scripts/task').eachLine { String line ->
            def m = line =~ /^\s*([a-z][a-z0-9 |]*)\)\s*$/
            if (m) {
                tasks.addAll(m[0][1].split(/\|/)*.trim())
            }
        }
        return tasks
    }

    /** The deploys deploys/site.py includes, in its order (each one's name without .py). */
    private static List<String> siteOrder() {
        (read('deploys/site.py') =~ /local\.include\(str\(DEPLOYS \/ "([a-z0-9_]+)\.py"\)\)/).collect { it[1] }
    }

    /** The tasks scripts/test deploys and verifies, in its order. */
    private static List<String> scriptsTestOrder() {
        def m = read('scripts/test') =~ /(?m)^TASKS=\(([^)]*)\)/
        assertTrue('scripts/test has no TASKS=(...) line', m.find())
        return m.group(1).tokenize()
    }

    /**
     * Checks one shell step: each command in it is a file of this repository (executable), the
     * `edgefaas` command with a subcommand it has, or one of the agent's basics; every argument
     * that names a path in the repository's source folders exists; and `scripts/task` is given a
     * task it knows, whose deploy exists. Returns what is wrong (empty when nothing is).
     */
    private List<String> problems(String script, String inventory) {
        List<String> found = []
        String expanded = script.replaceAll(/"?\$\{?INVENTORY\}?"?/, inventory)
        for (String command : expanded.split(/\s*(?:&&|\|\||\||;)\s*/)) {
            List<String> words = command.tokenize().collect { it.replaceAll(/^["']|["']$/, '') }
            if (!words) {
                continue
            }
            String first = words[0]
            if (first.contains('/')) {
                File file = new File(ROOT, first.replaceFirst(/^\.\//, ''))
                if (!file.isFile()) {
                    found << "'${first}' is not a file in the repository".toString()
                } else if (!file.canExecute()) {
                    found << "'${first}' is not executable".toString()
                }
            } else if (first == 'edgefaas') {
                if (!(read('pyproject.toml') =~ /(?m)^edgefaas\s*=/)) {
                    found << 'pyproject.toml declares no edgefaas command'
                }
                if (words.size() >= 3 && words[1] == 'lab' && !read('src/edgefaas/cli.py').contains("@lab.command(\"${words[2]}\"")) {
                    found << "'edgefaas lab ${words[2]}' is not a command of src/edgefaas/cli.py".toString()
                }
            } else if (!(first in SYSTEM_COMMANDS)) {
                found << "'${first}' is neither a file of the repository nor a known command".toString()
            }
            words.drop(1).findAll { it ==~ /(scripts|deploys|tests|inventories|src|functions|templates)\/.*/ }.each {
                if (!new File(ROOT, it).exists()) {
                    found << "'${it}' does not exist in the repository".toString()
                }
            }
            if (first.replaceFirst(/^\.\//, '') == 'scripts/task') {
                String task = words.size() > 1 ? words[1] : '(none)'
                if (!(task in knownTasks())) {
                    found << "scripts/task does not know the task '${task}'".toString()
                } else if (task in VERIFY_ONLY) {
                    if (!new File(ROOT, "tests/integration/test_${task}.py").isFile()) {
                        found << "scripts/task ${task}: tests/integration/test_${task}.py does not exist".toString()
                    }
                } else if (!(task in ['perf', 'lint', 'unit', 'suites', 'arm64'] + SCANS) && !new File(ROOT, "deploys/${task}.py").isFile()) {
                    found << "scripts/task ${task}: deploys/${task}.py does not exist".toString()
                }
            }
        }
        return found
    }

    // ---- the tests ---------------------------------------------------------------------------

    @Test
    void virtualLabRunsEveryStageInOrder() {
        runJenkinsfile()
        assertEquals(ALL_STAGES, stagesRun())
        assertEquals('SUCCESS', result())
        assertEquals(['lint', 'unit', 'arm64', 'platform', 'sonic', 'sdwan', 'k3s', 'parsec', 'nodeauth', 'edgefaas', 'registry', 'triton', 'monitoring', 'console', 'scan', 'faults', 'perf'], tasksRun())
        List<String> s = scripts()
        assertTrue(s.indexOf('edgefaas lab up') < s.findIndexOf { it.startsWith('scripts/task platform') })
        assertEquals('edgefaas lab down || true', s.last())
        // Prerequisites are checked before anything is built, for both architectures.
        assertTrue(s.indexOf('edgefaas lab build --check --arch all') < s.indexOf('edgefaas lab build'))
        assertTrue(s.indexOf('edgefaas lab build') < s.indexOf('scripts/task arm64'))
    }

    @Test
    void tasksRunInTheOrderOfSitePyAndScriptsTest() {
        runJenkinsfile()
        List<String> labTasks = tasksRun().findAll { !(it in ['lint', 'unit', 'arm64', 'perf']) }
        List<String> deployTasks = labTasks.findAll { !(it in VERIFY_ONLY) && !(it in SCANS) }
        assertEquals('the Jenkinsfile deploys in deploys/site.py\'s order', siteOrder(), deployTasks)
        // A verify-only task follows what it verifies: sdwan the switches' routing, the console every deploy.
        assertEquals('sdwan right after sonic', labTasks.indexOf('sonic') + 1, labTasks.indexOf('sdwan'))
        List<String> withoutSdwan = labTasks - 'sdwan'
        assertEquals('the console comes after every deploy', deployTasks + (withoutSdwan - deployTasks), withoutSdwan)
        assertEquals('the scans right after the console, on the whole blueprint before faults break it',
                     [labTasks.indexOf('console') + 1, labTasks.indexOf('faults') - 1], [labTasks.indexOf('scan')] * 2)
        assertEquals('the Jenkinsfile and scripts/test run the same tasks in the same order',
                     scriptsTestOrder(), labTasks)
    }

    @Test
    void everyShellStepNamesWhatTheRepositoryHas() {
        Map<String, String> labs = [(VIRTUAL): '', (REAL): 'lab-ssh']
        labs.each { String inventory, String credentials ->
            reset()
            runJenkinsfile(INVENTORY: inventory, LAB_CREDENTIALS: credentials)
            assertFalse('no shell step ran', shells().isEmpty())
            List<String> all = scripts().collectMany { problems(it, inventory).collect { p -> "sh '${it}': ${p}".toString() } }
            assertTrue("with INVENTORY=${inventory}:\n  " + all.join('\n  '), all.isEmpty())
        }
    }

    @Test
    void theFileCheckCatchesWhatIsMissing() {
        // The check above must be able to fail: a sketch of the mistakes it is there for.
        assertFalse(problems('scripts/no-such-script', VIRTUAL).isEmpty())
        assertFalse(problems('scripts/task k3s --inventory inventories/nope.py', VIRTUAL).isEmpty())
        assertFalse(problems('scripts/task nonsense', VIRTUAL).isEmpty())
        assertFalse(problems('edgefaas lab explode', VIRTUAL).isEmpty())
        assertFalse(problems('curl -sf example.invalid', VIRTUAL).isEmpty())
        assertTrue(problems('scripts/task k3s --inventory "$INVENTORY"', VIRTUAL).isEmpty())
    }

    @Test
    void eachRunParameterSwitchesItsStageOff() {
        TOGGLES.each { String param, List<String> stageAndTask ->
            reset()
            runJenkinsfile((param): false)
            String stage = stageAndTask[0]
            String task = stageAndTask[1]
            assertFalse("${param}=false still ran '${stage}'", stage in stagesRun())
            assertFalse("${param}=false still ran scripts/task ${task}", task in tasksRun())
            assertEquals("${param}=false must leave the other stages alone", ALL_STAGES - stage, stagesRun())
            assertEquals("${param}=false must skip '${stage}' for its when".toString(), 'when', pipeline.stagesSkipped[stage])
        }
    }

    @Test
    void tritonOffRunsNoTritonStage() {
        runJenkinsfile(RUN_TRITON: false)
        assertFalse('Triton (SoW Task 4)' in stagesRun())
        assertFalse(scripts().any { it.contains('scripts/task triton') })
        assertEquals('SUCCESS', result())
    }

    @Test
    void perfPassesTheDurationAndPublishesItsReport() {
        runJenkinsfile(PERF_DURATION: '15s')
        assertEquals('15s', pipeline.env.PERF_DURATION)
        assertTrue(scripts().contains('scripts/task perf --inventory "$INVENTORY"'))
        assertTrue(calls('archiveArtifacts').any { it.args[0].artifacts == 'reports/perf/**' })
        def html = calls('publishHTML')
        assertEquals(1, html.size())
        Map target = html[0].args[0].target
        assertEquals('reports/perf', target.reportDir)
        assertEquals('report.html', target.reportFiles)
        assertTrue('the report is published even when perf wrote none (skipped)', target.allowMissing)
        // scripts/task perf writes where the stage looks, as `edgefaas perf` names it.
        assertTrue(read('scripts/task').contains('--out reports/perf'))
        File perf = new File(ROOT, 'src/edgefaas/perf')
        if (perf.isDirectory()) {
            assertTrue('edgefaas perf no longer writes OUT/report.html',
                       perf.listFiles().any { it.name.endsWith('.py') && it.text.contains('"report.html"') })
        }
    }

    @Test
    void perfReportIsPublishedEvenWhenAThresholdIsBroken() {
        failOn = 'scripts/task perf'
        runJenkinsfile()
        assertEquals('FAILURE', result())
        assertEquals(1, calls('publishHTML').size())
        assertTrue(scripts().contains('edgefaas lab down || true'))
    }

    @Test
    void postAlwaysTakesTheVirtualLabDownWhenAStageFails() {
        // A failure in each stage after the lab is up, and in bringing it up.
        ['edgefaas lab up', 'scripts/task platform', 'scripts/task parsec', 'scripts/task k3s',
         'scripts/task nodeauth', 'scripts/task triton', 'scripts/task edgefaas', 'scripts/task registry', 'scripts/task monitoring', 'scripts/task console',
         'scripts/task scan', 'scripts/task faults', 'scripts/task perf'].each { String failing ->
            reset()
            failOn = failing
            runJenkinsfile()
            assertEquals("a failing '${failing}' fails the build", 'FAILURE', result())
            int failedAt = scripts().findIndexOf { it.contains(failing) }
            List<String> after = scripts().drop(failedAt + 1)
            assertEquals("after '${failing}' failed, only post ran", ['edgefaas lab down || true'], after)
            assertTrue(calls('junit').any { it.args[0].testResults == 'reports/*.xml' })
            assertTrue(calls('archiveArtifacts').any { it.args[0].artifacts == 'reports/**' })
        }
    }

    @Test
    void theScansRunAfterTheConsoleAndTheirReportsAreArchived() {
        runJenkinsfile()
        assertTrue(scripts().contains('scripts/task scan --inventory "$INVENTORY"'))
        def archived = calls('archiveArtifacts').find { it.args[0].artifacts == 'reports/scans/**' }
        assertEquals('Security scans', archived?.stage)
        // scripts/task writes where the stage archives from.
        assertTrue(read('scripts/task').contains('--out reports/scans'))

        // A failing scan still has its reports archived, and the lab goes down.
        reset()
        failOn = 'scripts/task scan'
        runJenkinsfile()
        assertEquals('FAILURE', result())
        assertTrue(calls('archiveArtifacts').any { it.args[0].artifacts == 'reports/scans/**' })
        assertEquals(['Faults', 'Perf'], pipeline.stagesSkipped.findAll { it.value == 'earlier failure' }.keySet() as List)
        assertEquals('edgefaas lab down || true', scripts().last())
    }

    @Test
    void withoutNexusCredentialsTheLogPushSaysItWasSkipped() {
        [[:], [NEXUS_URL: 'https://nexus.example.org'], [NEXUS_CREDENTIALS: 'akraino-nexus']].each { Map given ->
            reset()
            runJenkinsfile(given)
            assertEquals('SUCCESS', result())
            assertFalse(scripts().any { it.contains('push-logs') })
            assertTrue(calls('usernamePassword').isEmpty())
            assertTrue(calls('echo').any { (it.args[0] as String).contains('Nexus push skipped') })
        }
    }

    @Test
    void withNexusCredentialsTheLogsArePushedAfterTheLabIsDownEvenWhenAStageFailed() {
        Map nexus = [NEXUS_URL: 'https://nexus.example.org', NEXUS_CREDENTIALS: 'akraino-nexus']
        [null, 'scripts/task k3s'].each { String failing ->
            reset()
            failOn = failing
            runJenkinsfile(nexus)
            List<Map> pushes = shells().findAll { it.script == 'scripts/push-logs' }
            assertEquals(1, pushes.size())
            assertEquals(['edgefaas lab down || true', 'scripts/push-logs'], scripts().takeRight(2))
            def binding = calls('usernamePassword')
            assertEquals([[credentialsId: 'akraino-nexus', usernameVariable: 'NEXUS_USER',
                           passwordVariable: 'NEXUS_PASSWORD']], binding*.args*.getAt(0))
            def push = calls('sh').find { it.args[0] == 'scripts/push-logs' }
            assertEquals('user-of-akraino-nexus', push.env.NEXUS_USER)
            assertEquals('password-of-akraino-nexus', push.env.NEXUS_PASSWORD)
            assertEquals('https://nexus.example.org', push.env.NEXUS_URL)
            assertTrue(problems('scripts/push-logs', VIRTUAL).isEmpty())
            // The password is bound only for the push.
            assertEquals(1, calls('sh').count { it.env.NEXUS_PASSWORD })
        }
        // scripts/push-logs pushes the way Akraino's jobs do.
        assertTrue(read('scripts/push-logs').contains('deploy nexus-zip "$NEXUS_URL" logs'))
    }

    @Test
    void postTakesTheVirtualLabDownEvenWhenSetupFails() {
        failOn = './scripts/setup'
        runJenkinsfile()
        assertEquals('FAILURE', result())
        assertEquals(['Setup'], stagesRun())
        assertEquals('edgefaas lab down || true', scripts().last())
    }

    @Test
    void aRealLabIsNeverBroughtUpOrDown() {
        runJenkinsfile(INVENTORY: REAL, LAB_CREDENTIALS: 'lab-ssh')
        assertEquals('SUCCESS', result())
        assertEquals(ALL_STAGES - 'Lab up', stagesRun())
        assertFalse(scripts().any { it.startsWith('edgefaas lab up') || it.startsWith('edgefaas lab down') })
        assertEquals('no', pipeline.env.VIRTUAL_LAB)
    }

    @Test
    void aRealLabGetsItsCredentialsForEveryTask() {
        runJenkinsfile(INVENTORY: REAL, LAB_CREDENTIALS: 'lab-ssh')
        def creds = calls('sshUserPrivateKey')
        assertEquals(['platform', 'sonic', 'sdwan', 'k3s', 'parsec', 'nodeauth', 'edgefaas', 'registry', 'triton', 'monitoring', 'console', 'scan', 'faults', 'perf'].size(), creds.size())
        creds.each {
            assertEquals([credentialsId: 'lab-ssh', keyFileVariable: 'EDGEFAAS_SSH_KEY',
                          usernameVariable: 'EDGEFAAS_SSH_USER'], it.args[0])
        }
        List<Map> shells = shells()
        List<Map> taskShells = shells.findAll { it.script =~ /^scripts\/task (platform|sonic|sdwan|parsec|k3s|nodeauth|triton|edgefaas|registry|monitoring|console|scan|faults|perf) / }
        assertEquals(14, taskShells.size())
        taskShells.each {
            assertEquals("${it.script} ran without the SSH key bound".toString(), '/tmp/credentials/lab-ssh.key', it.sshKey)
            assertEquals('user-of-lab-ssh', it.sshUser)
        }
        // Lint, unit tests and the artifact build never see the lab's key.
        shells.findAll { !(it in taskShells) }.each { assertEquals(null, it.sshKey) }
    }

    @Test
    void theVirtualLabNeedsNoCredentials() {
        runJenkinsfile()
        assertTrue(calls('sshUserPrivateKey').isEmpty())
        assertTrue(calls('withCredentials').isEmpty())
        assertEquals('yes', pipeline.env.VIRTUAL_LAB)
    }

    @Test
    void theHarnessRefusesWhatItDoesNotModel() {
        // A Jenkinsfile step or section the harness does not know must fail the tests, not pass
        // unnoticed: a sketch of each kind.
        [slackSend: "steps { slackSend 'hi' }", branch: "when { branch 'main' }",
         tools: "steps { sh 'true' }; tools { jdk 'x' }"].each { String unknown, String body ->
            File jenkinsfile = File.createTempFile('Jenkinsfile', '')
            try {
                jenkinsfile.text = "pipeline { agent { label 'x' }; stages { stage('A') { ${body} } } }"
                new DeclarativePipelineHarness().run(jenkinsfile)
                fail("the harness accepted: ${body}")
            } catch (DeclarativePipelineHarness.UnsupportedDslException expected) {
                assertTrue(expected.message, expected.message.contains("'${unknown}'"))
            } finally {
                jenkinsfile.delete()
            }
        }
    }
}
